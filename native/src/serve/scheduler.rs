//! Continuous batching: one thread owns the engine and steps every busy slot together.
//! Each step is one batched forward (`Session::forward_sequences`): a token for every
//! decoding slot, then prompt chunks for the slots still prefilling, up to a token budget,
//! so that a long prompt never stalls the running decodes. A new request takes a free slot
//! at the next step (the free slot holding the longest prefix of its prompt, which it keeps:
//! a chat's next turn does not recompute the conversation) and a finished one leaves.
//! Requests talk to this thread by messages; a request whose client went away (its event
//! receiver dropped) is cancelled at the next step and its slot freed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use strata::backend::Backend;
use strata::engine::{Engine, EngineError};
use strata::sampler::{Sampler, SamplerConfig};
use strata::session::{Sequence, SessionError};
use strata::tokenizer::TextStream;
use tokio::sync::{mpsc, oneshot};

use super::api::{ApiError, Finish, Piece, Prompt, TokenLogprob, Usage};
use super::metrics::Metrics;

/// Figures the HTTP side reads: readiness, queue depth, busy slots.
#[derive(Default)]
pub struct Shared {
    pub ready: AtomicBool,
    /// Requests accepted and waiting for a slot.
    pub queued: AtomicUsize,
    pub busy: AtomicUsize,
    pub metrics: Metrics,
}

/// What the HTTP side asks of the engine's thread.
pub enum Msg {
    /// A request's prompt as tokens, checked against a slot's context.
    Encode { prompt: Prompt, reply: oneshot::Sender<Result<Vec<u32>, ApiError>> },
    /// `/tokenize`.
    Tokenize { text: String, add_special: bool, reply: oneshot::Sender<Result<Vec<u32>, ApiError>> },
    /// `/detokenize`.
    Detokenize { tokens: Vec<u32>, reply: oneshot::Sender<Result<String, ApiError>> },
    /// A completion to run in the next free slot.
    Job(Job),
}

pub struct Job {
    pub prompt: Vec<u32>,
    /// `None`: until the end-of-generation token or the slot's context is full.
    pub max_tokens: Option<usize>,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    pub events: mpsc::UnboundedSender<Event>,
    /// When the request arrived (time to first token counts from here).
    pub arrived: Instant,
    /// Report each token's log-probability and this many alternatives'.
    pub logprobs: Option<usize>,
}

/// What a request hears back, in order: text pieces (with the logprobs of the tokens
/// sampled since the last piece, when asked for), then `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    Text(String, Vec<TokenLogprob>),
    Done(Finish, Usage),
    Failed(ApiError),
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub slots: usize,
    /// KV-cache positions per slot.
    pub context: usize,
    /// Tokens one step runs at most (decodes first, then prompt chunks).
    pub batch_tokens: usize,
}

/// The engine's thread: its messages and what it reports.
pub struct Worker {
    pub rx: mpsc::UnboundedReceiver<Msg>,
    pub shared: Arc<Shared>,
    pub options: Options,
}

/// A request being served.
struct Live {
    job: Job,
    /// Prompt tokens in the slot's cache so far (reused ones included).
    fed: usize,
    cached: usize,
    /// The sampled token the next step runs (`None` while prefilling).
    next: Option<u32>,
    sampler: Sampler,
    /// Prompt and sampled tokens (the repetition penalty's window).
    history: Vec<u32>,
    text: TextStream,
    /// Bytes of `text` sent.
    sent: usize,
    /// When the last token was sampled.
    last: Option<Instant>,
    /// Logprobs of tokens whose text is not sent yet (held back, or not a whole character).
    pending: Vec<TokenLogprob>,
}

impl Live {
    fn usage(&self) -> Usage {
        Usage { prompt: self.job.prompt.len(), completion: self.text.tokens().len(), cached: self.cached }
    }
}

fn server_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(500, "server_error", None, e.to_string())
}

fn encode_error(e: EngineError) -> ApiError {
    match e {
        EngineError::NoChatTemplate | EngineError::Template(_) => ApiError::invalid("messages", e.to_string()),
        EngineError::Tokenizer { .. } => ApiError::invalid("prompt", e.to_string()),
        e => server_error(e),
    }
}

/// Serves until the HTTP side hangs up.
pub fn run<B: Backend>(engine: Engine<B>, w: Worker) -> Result<(), EngineError> {
    let Worker { mut rx, shared, options } = w;
    let session = engine.session();
    let mut seqs: Vec<Sequence<B>> = (0..options.slots).map(|_| session.new_sequence(options.context)).collect::<Result<_, _>>()?;
    let context = seqs[0].context();
    let mut lives: Vec<Option<Live>> = (0..options.slots).map(|_| None).collect();
    let mut waiting: VecDeque<Job> = VecDeque::new();
    shared.ready.store(true, Ordering::SeqCst);
    eprintln!("strata serve: model loaded on {} ({} slots of {context} positions)", engine.backend_name(), options.slots);

    let handle = |m: Msg, waiting: &mut VecDeque<Job>| match m {
        Msg::Encode { prompt, reply } => {
            let vocab = engine.tokenizer().vocab_size();
            let ids = match prompt {
                Prompt::Text(t) => engine.encode_prompt(&t).map_err(encode_error),
                Prompt::Tokens(ids) => match ids.iter().position(|&t| t as usize >= vocab) {
                    Some(i) => Err(ApiError::invalid("prompt", format!("'prompt[{i}]' = {}: past the vocabulary ({vocab} tokens)", ids[i]))),
                    None => Ok(ids),
                },
                Prompt::Chat(messages) => engine.encode_chat(&messages).map_err(encode_error),
            };
            let r = ids.and_then(|ids| {
                if ids.is_empty() {
                    Err(ApiError::invalid("prompt", "the prompt encodes to no tokens and this model adds no BOS token"))
                } else if ids.len() >= context {
                    // At least one position must stay free for the reply.
                    Err(ApiError::invalid("messages", format!("this model's context per slot is {context} tokens; the prompt has {} (it needs at least one position left to reply)", ids.len())).with_code("context_length_exceeded"))
                } else {
                    Ok(ids)
                }
            });
            let _ = reply.send(r);
        }
        Msg::Tokenize { text, add_special, reply } => {
            let _ = reply.send(engine.tokenizer().encode(&text, add_special, true).map_err(|e| ApiError::invalid("content", e.to_string())));
        }
        Msg::Detokenize { tokens, reply } => {
            let vocab = engine.tokenizer().vocab_size();
            let r = match tokens.iter().find(|&&t| t as usize >= vocab) {
                Some(t) => Err(ApiError::invalid("tokens", format!("token id {t} is past the vocabulary ({vocab} tokens)"))),
                None => engine.tokenizer().decode(&tokens).map_err(|e| ApiError::invalid("tokens", e.to_string())),
            };
            let _ = reply.send(r);
        }
        Msg::Job(job) => waiting.push_back(job),
    };

    let eog = &engine.model().config.eog_token_ids;
    let tokenizer = engine.tokenizer();
    loop {
        shared.busy.store(lives.iter().filter(|l| l.is_some()).count(), Ordering::SeqCst);
        // Messages: wait for one when there is nothing to run, then take all that came.
        if waiting.is_empty() && lives.iter().all(Option::is_none) {
            match rx.blocking_recv() {
                Some(m) => handle(m, &mut waiting),
                None => return Ok(()),
            }
        }
        while let Ok(m) = rx.try_recv() {
            handle(m, &mut waiting);
        }
        // Cancel what nobody listens to any more.
        for l in lives.iter_mut() {
            if l.as_ref().is_some_and(|l| l.job.events.is_closed()) {
                *l = None;
            }
        }
        // Admit waiting requests into free slots.
        while let Some(job) = waiting.pop_front() {
            shared.queued.fetch_sub(1, Ordering::SeqCst);
            if job.events.is_closed() {
                continue;
            }
            let free = (0..lives.len()).filter(|&i| lives[i].is_none());
            let Some(slot) = free.max_by_key(|&i| (common(seqs[i].tokens(), &job.prompt), std::cmp::Reverse(i))) else {
                shared.queued.fetch_add(1, Ordering::SeqCst);
                waiting.push_front(job);
                break;
            };
            let kept = seqs[slot].keep_common_prefix(&job.prompt);
            let history = job.prompt.clone();
            shared.metrics.prompt_tokens.fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
            shared.metrics.cached_tokens.fetch_add(kept as u64, Ordering::Relaxed);
            lives[slot] = Some(Live { sampler: Sampler::new(job.sampler.clone()), job, fed: kept, cached: kept, next: None, history, text: TextStream::new(), sent: 0, last: None, pending: Vec::new() });
        }
        shared.busy.store(lives.iter().filter(|l| l.is_some()).count(), Ordering::SeqCst);
        if lives.iter().all(Option::is_none) {
            continue;
        }

        // This step's tokens: one per decoding slot, then prompt chunks within the budget.
        let mut feeds: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut budget = options.batch_tokens;
        for (i, l) in lives.iter().enumerate() {
            if let Some(next) = l.as_ref().and_then(|l| l.next) {
                feeds.push((i, vec![next]));
                budget = budget.saturating_sub(1);
            }
        }
        for (i, l) in lives.iter().enumerate() {
            let Some(l) = l.as_ref().filter(|l| l.next.is_none()) else { continue };
            // Every prefilling slot gets a token even when decodes used the budget up.
            let n = budget.max(1).min(l.job.prompt.len() - l.fed);
            feeds.push((i, l.job.prompt[l.fed..l.fed + n].to_vec()));
            budget = budget.saturating_sub(n);
        }
        let logits = {
            let mut free: Vec<Option<&mut Sequence<B>>> = seqs.iter_mut().map(Some).collect();
            let mut batch: Vec<(&mut Sequence<B>, &[u32])> = feeds.iter().filter_map(|(i, f)| Some((free[*i].take()?, f.as_slice()))).collect();
            session.forward_sequences(&mut batch)
        };
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                // Nothing advanced; the requests of this batch fail, the server goes on.
                for (i, _) in &feeds {
                    if let Some(l) = lives[*i].take() {
                        let _ = l.job.events.send(Event::Failed(server_error(&e)));
                    }
                    seqs[*i].clear();
                }
                continue;
            }
        };
        for (row, (i, fed)) in feeds.iter().enumerate() {
            let Some(l) = lives[*i].as_mut() else { continue };
            if l.next.is_none() {
                l.fed += fed.len();
                if l.fed < l.job.prompt.len() {
                    continue; // a chunk short of the prompt's end: its logits are not used
                }
            }
            let position = seqs[*i].tokens().len() - 1;
            let tok = match pollster::block_on(session.pick_row(&logits, row, position, &mut l.sampler, &l.history)) {
                Ok(t) => t,
                Err(e) => {
                    let status = if matches!(e, SessionError::Setting(_)) { 400 } else { 500 };
                    let _ = l.job.events.send(Event::Failed(ApiError { status, ..server_error(&e) }));
                    lives[*i] = None;
                    seqs[*i].clear();
                    continue;
                }
            };
            let now = Instant::now();
            match l.last {
                None => shared.metrics.time_to_first_token.observe(now - l.job.arrived),
                Some(t) => shared.metrics.time_per_token.observe(now - t),
            }
            l.last = Some(now);
            let outcome = if eog.contains(&tok) {
                Some(Finish::Stop)
            } else {
                if let Some(top) = l.job.logprobs {
                    match pollster::block_on(session.row_logprobs(&logits, row, tok, top)) {
                        Ok(lp) => {
                            let piece = |id: u32, logprob: f32| {
                                let bytes = tokenizer.token_bytes(id).unwrap_or_default();
                                Piece { text: String::from_utf8_lossy(&bytes).into_owned(), bytes, logprob }
                            };
                            l.pending.push(TokenLogprob { chosen: piece(lp.token, lp.logprob), top: lp.top.iter().map(|&(id, p)| piece(id, p)).collect() });
                        }
                        Err(e) => {
                            let _ = l.job.events.send(Event::Failed(server_error(e)));
                            lives[*i] = None;
                            continue;
                        }
                    }
                }
                l.history.push(tok);
                shared.metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = l.text.push(tokenizer, tok) {
                    let _ = l.job.events.send(Event::Failed(server_error(e)));
                    lives[*i] = None;
                    continue;
                }
                let (piece, stopped) = emit(l);
                if !piece.is_empty() && l.job.events.send(Event::Text(piece, std::mem::take(&mut l.pending))).is_err() {
                    lives[*i] = None; // the client went away
                    continue;
                }
                if stopped {
                    Some(Finish::Stop)
                } else if l.job.max_tokens.is_some_and(|m| l.text.tokens().len() >= m) || seqs[*i].tokens().len() >= context {
                    Some(Finish::Length)
                } else {
                    l.next = Some(tok);
                    None
                }
            };
            if let Some(finish) = outcome {
                // What was held back (the start of a stop string that never completed, an
                // unfinished character) ends the text; after a stop string nothing is left.
                let rest = l.text.text()[l.sent..].to_string();
                if !rest.is_empty() || !l.pending.is_empty() {
                    let _ = l.job.events.send(Event::Text(rest, std::mem::take(&mut l.pending)));
                }
                let _ = l.job.events.send(Event::Done(finish, l.usage()));
                lives[*i] = None;
            }
        }
    }
}

/// Tokens two sequences share from the start.
fn common(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The text `l` may send now, and whether a stop string ended it. A stop string is never
/// sent: the text up to it goes, and whatever could still become one (a suffix that is a
/// prefix of a stop string, or an unfinished character) is held back.
fn emit(l: &mut Live) -> (String, bool) {
    let text = l.text.text();
    let longest = l.job.stop.iter().map(String::len).max().unwrap_or(0);
    // A match that ends in the new text starts at most `longest - 1` bytes before it.
    let mut from = l.sent.saturating_sub(longest.saturating_sub(1));
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    if let Some(at) = l.job.stop.iter().filter_map(|s| text[from..].find(s.as_str()).map(|p| from + p)).min() {
        let at = at.max(l.sent);
        let piece = text[l.sent..at].to_string();
        l.sent = text.len();
        return (piece, true);
    }
    let mut safe = text.trim_end_matches('\u{fffd}').len();
    let hold = l
        .job
        .stop
        .iter()
        .flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k) && text[..safe].ends_with(&s[..k])))
        .max()
        .unwrap_or(0);
    safe = (safe - hold).max(l.sent);
    let piece = text[l.sent..safe].to_string();
    l.sent = safe;
    (piece, false)
}
