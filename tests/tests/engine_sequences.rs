//! The session's multi-sequence API (what `strata serve`'s continuous batching drives):
//! sequences with their own KV caches stepped together by `Session::forward_sequences`,
//! requests joining mid-run, prompts prefilled in chunks beside running decodes, a finished
//! request's slot reused by the next one with their common prefix kept. Every request's
//! logits and greedy tokens must equal what the single-sequence path (`prefill` then
//! `decode_step`, itself checked against Hugging Face) gives it alone.

use std::path::Path;

use strata::backend::Backend;
use strata::sampler::{argmax, Sampler, SamplerConfig};
use strata::session::{Sequence, Session};
use strata::source::{ByteSource, FileSource};
use strata_conformance::engine::{fast_cpu, max_abs_diff};
use strata_conformance::{fixtures, models};

struct Request {
    prompt: Vec<u32>,
    max_tokens: usize,
    /// Prompt tokens prefilled per step.
    chunk: usize,
}

/// A request being served in a slot.
struct Live {
    req: usize,
    slot: usize,
    /// Prompt tokens in the slot's cache (reused ones included).
    fed: usize,
    out: Vec<u32>,
    rows: Vec<Vec<f32>>,
}

fn open<B: Backend>(b: B, path: &Path) -> Session<B> {
    let model = strata::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let files: Vec<FileSource> = model
        .files
        .files
        .iter()
        .map(|f| FileSource::open(f).unwrap())
        .collect();
    let sources: Vec<&dyn ByteSource> = files.iter().map(|f| f as &dyn ByteSource).collect();
    Session::new(b, model, &sources, 128, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The logits of every step of `r` alone, and its greedy tokens.
fn alone<B: Backend>(s: &mut Session<B>, r: &Request) -> (Vec<u32>, Vec<Vec<f32>>) {
    s.reset();
    let mut rows = vec![pollster::block_on(s.prefill(&r.prompt)).unwrap()];
    let mut out = vec![argmax(&rows[0]) as u32];
    while out.len() < r.max_tokens {
        rows.push(pollster::block_on(s.decode_step(*out.last().unwrap())).unwrap());
        out.push(argmax(rows.last().unwrap()) as u32);
    }
    (out, rows)
}

/// Serves `reqs` through two slots: request 0 starts alone, request 1 joins at the next
/// step with its prompt in chunks, request 2 waits for the first free slot and keeps the
/// prefix it shares with what that slot holds, and request 3 likewise. Returns each request's tokens and logits.
fn served<B: Backend>(s: &Session<B>, reqs: &[Request]) -> Vec<(Vec<u32>, Vec<Vec<f32>>, usize)> {
    let mut slots: Vec<Sequence<B>> = (0..2).map(|_| s.new_sequence(128).unwrap()).collect();
    let mut done: Vec<Option<(Vec<u32>, Vec<Vec<f32>>, usize)>> =
        reqs.iter().map(|_| None).collect();
    let mut live: Vec<Live> = vec![Live {
        req: 0,
        slot: 0,
        fed: 0,
        out: vec![],
        rows: vec![],
    }];
    let (mut next, mut reused) = (1, vec![0; reqs.len()]);
    let vocab = s.model().config.vocab_size as usize;
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    for step in 0.. {
        assert!(step < 100, "the schedule ends");
        // Admit the next request into a free slot (from step 1 on).
        if step > 0 && next < reqs.len() {
            if let Some(slot) = (0..slots.len()).find(|i| live.iter().all(|l| l.slot != *i)) {
                let kept = slots[slot].keep_common_prefix(&reqs[next].prompt);
                reused[next] = kept;
                live.push(Live {
                    req: next,
                    slot,
                    fed: kept,
                    out: vec![],
                    rows: vec![],
                });
                next += 1;
            }
        }
        if live.is_empty() {
            break;
        }
        // Each live request's tokens for this step: a prompt chunk or its last token.
        let feeds: Vec<Vec<u32>> = live
            .iter()
            .map(|l| {
                let r = &reqs[l.req];
                if l.fed < r.prompt.len() {
                    r.prompt[l.fed..(l.fed + r.chunk).min(r.prompt.len())].to_vec()
                } else {
                    vec![*l.out.last().unwrap()]
                }
            })
            .collect();
        let logits = {
            let mut free: Vec<Option<&mut Sequence<B>>> = slots.iter_mut().map(Some).collect();
            let mut batch: Vec<(&mut Sequence<B>, &[u32])> = live
                .iter()
                .zip(&feeds)
                .map(|(l, f)| (free[l.slot].take().unwrap(), f.as_slice()))
                .collect();
            s.forward_sequences(&mut batch)
                .unwrap_or_else(|e| panic!("step {step}: {e}"))
        };
        for (row, (l, f)) in live.iter_mut().zip(&feeds).enumerate() {
            let prompt_len = reqs[l.req].prompt.len();
            if l.fed < prompt_len {
                l.fed += f.len();
                if l.fed < prompt_len {
                    continue; // a chunk short of the prompt's end: its logits are not used
                }
            }
            let history: Vec<u32> = reqs[l.req].prompt.iter().chain(&l.out).copied().collect();
            let position = slots[l.slot].tokens().len() - 1;
            let tok =
                pollster::block_on(s.pick_row(&logits, row, position, &mut sampler, &history))
                    .unwrap();
            l.rows
                .push(pollster::block_on(s.backend().read(&logits, row * vocab, vocab)).unwrap());
            l.out.push(tok);
        }
        live.retain_mut(|l| {
            let finished = l.out.len() == reqs[l.req].max_tokens;
            if finished {
                done[l.req] = Some((
                    std::mem::take(&mut l.out),
                    std::mem::take(&mut l.rows),
                    reused[l.req],
                ));
            }
            !finished
        });
    }
    done.into_iter()
        .map(|d| d.expect("every request served"))
        .collect()
}

fn assert_served_equals_alone<B: Backend>(mut e: Session<B>, prompt: &[u32], tol: f32) {
    let n = 6;
    let mut reqs = vec![
        Request {
            prompt: prompt.to_vec(),
            max_tokens: n,
            chunk: prompt.len(),
        },
        Request {
            prompt: prompt[3..].to_vec(),
            max_tokens: n + 4,
            chunk: 3,
        },
    ];
    // Request 2 continues request 0's conversation: its prompt, its reply, more.
    let first = alone(&mut e, &reqs[0]).0;
    let mut cont = prompt.to_vec();
    cont.extend(&first);
    cont.extend(&prompt[..4]);
    reqs.push(Request {
        prompt: cont,
        max_tokens: n,
        chunk: 5,
    });
    // Request 3 lands in the slot request 2 left (request 1 is still decoding) and shares
    // only its first 8 tokens: the rest of what the slot holds must be forgotten.
    assert_ne!(
        prompt[0], prompt[8],
        "the case needs request 3 to part from request 2 at token 8"
    );
    let mut part = prompt[..8].to_vec();
    part.extend(&prompt[..4]);
    reqs.push(Request {
        prompt: part,
        max_tokens: 3,
        chunk: 2,
    });

    let got = served(&e, &reqs);
    for (i, r) in reqs.iter().enumerate() {
        let (tokens, rows) = alone(&mut e, r);
        assert_eq!(
            got[i].0,
            tokens,
            "{}: request {i}'s greedy tokens served vs alone",
            e.backend_name()
        );
        for (step, (a, b)) in got[i].1.iter().zip(&rows).enumerate() {
            let d = max_abs_diff(a, b);
            assert!(
                d <= tol,
                "{}: request {i} step {step}: max |dlogit| {d} served vs alone (tol {tol})",
                e.backend_name()
            );
        }
    }
    // Request 2 ran in request 0's slot (request 1 was still decoding) and reused all it
    // held: request 0's prompt and every reply token but the last, which never ran.
    assert_eq!(
        got[2].2,
        prompt.len() + n - 1,
        "request 2 reuses request 0's conversation"
    );
    assert_eq!(got[1].2, 0, "request 1 shares nothing with an empty slot");
    assert_eq!(
        got[3].2, 8,
        "request 3 keeps the 8 tokens it shares with request 2"
    );
}

#[test]
fn reference_tiny_llama_and_gemma3_bit_identical() {
    for arch in ["llama", "gemma3"] {
        let path = fixtures::path(&format!("tiny/{arch}"));
        let tokens = fixtures::ids(&fixtures::json(&format!("tiny/{arch}/tokens.json"))["tokens"]);
        assert_served_equals_alone(
            open(strata::backend::cpu::CpuBackend::new(), &path),
            &tokens[..12],
            0.0,
        );
    }
}

#[test]
fn fast_cpu_smollm2() {
    let Some(path) = models::find(models::SMOLLM2) else {
        return;
    };
    let prompt = [504, 3458, 282, 4649, 314, 2867, 30, 378, 2396, 1536];
    assert_served_equals_alone(open(fast_cpu(), &path), &prompt, 1e-4);
}

/// Misuse of a sequence is an error that names it, and nothing advances.
#[test]
fn a_full_sequence_is_an_error_and_nothing_advances() {
    let path = fixtures::path("tiny/llama");
    let s = open(strata::backend::cpu::CpuBackend::new(), &path);
    let (mut a, mut small) = (s.new_sequence(16).unwrap(), s.new_sequence(4).unwrap());
    let err = s
        .forward_sequences(&mut [(&mut a, &[1, 2, 3]), (&mut small, &[1, 2, 3, 4, 5])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sequence 1 of the batch: 5 tokens do not fit the sequence's context of 4"),
        "{err}"
    );
    assert_eq!((a.tokens().len(), small.tokens().len()), (0, 0));
    let err = s
        .forward_sequences(&mut [(&mut a, &[])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty prompt"), "{err}");
    assert!(s.new_sequence(0).is_err(), "a sequence of no positions");
}
