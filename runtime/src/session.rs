//! The public inference API: load a model onto a backend, prefill, decode, generate with a
//! token stream and stop conditions. Async because a GPU backend's readback is (native
//! callers block on it with `pollster`).

use std::time::Duration;

use crate::arch::forward::{Logits, Net, Seq};
use crate::clock::Clock;
use crate::backend::{Backend, BackendError, MAX_DEVICE_TOP_K};
use crate::kv_cache::KvCache;
use crate::model::LoadedModel;
use crate::rope::{RopeError, RopeTables};
use crate::sampler::Sampler;
use crate::settings::{check_context, SettingError};
use crate::source::ByteSource;
use crate::streaming::StreamPlan;
use crate::tokenizer::{TextStream, Tokenizer, TokenizerError};
use crate::weights::{WeightError, Weights};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Rope(#[from] RopeError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("{tokens} tokens do not fit the context of {context} (prompt {prompt} + {requested} to generate): shorten the prompt or ask for fewer tokens")]
    ContextOverflow { tokens: usize, context: usize, prompt: usize, requested: usize },
    #[error("{sequence}{tokens} tokens do not fit the sequence's context of {context}")]
    SequenceFull { sequence: String, tokens: usize, context: usize },
    #[error("empty prompt: it encodes to no tokens and this model adds no BOS token, so there is nothing to condition on")]
    EmptyPrompt,
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// NaN or infinite logits: the weights (or an input) hold non-finite values.
    #[error("{}", non_finite_message(*position, *step, *layer))]
    NonFinite {
        /// The position whose logits are not finite.
        position: usize,
        /// The generation step (0: the prompt's), when generating.
        step: Option<usize>,
        /// The first layer whose output is not finite, where the backend can tell.
        layer: Option<usize>,
    },
}

impl From<crate::arch::forward::ForwardError> for SessionError {
    fn from(e: crate::arch::forward::ForwardError) -> Self {
        match e {
            crate::arch::forward::ForwardError::Backend(e) => SessionError::Backend(e),
            crate::arch::forward::ForwardError::Weights(e) => SessionError::Weights(e),
        }
    }
}

fn non_finite_message(position: usize, step: Option<usize>, layer: Option<usize>) -> String {
    let step = step.map_or_else(String::new, |s| if s == 0 { " (the prompt's step)".into() } else { format!(" (generation step {s})") });
    let layer = match layer {
        Some(l) => format!("; layer {l} is the first whose output is not finite"),
        None => "; this backend cannot tell which layer (the cpu backend can)".into(),
    };
    format!("the model computed NaN or infinite logits at position {position}{step}{layer}: its weights are damaged or out of range (`strata inspect --deep MODEL` finds non-finite blocks)")
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token (not included in the output).
    EndOfGeneration,
    /// The requested number of tokens.
    MaxTokens,
    /// The token callback asked to stop.
    Cancelled,
}

/// The result of [`Session::generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
    pub prefill: Duration,
    pub decode: Duration,
}

/// A model loaded on a backend, with its KV cache.
pub struct Session<B: Backend> {
    backend: B,
    model: LoadedModel,
    weights: Weights<B>,
    rope: RopeTables,
    kv: KvCache<B>,
    /// Positions the KV cache holds (`min(context_length, requested)`).
    context: usize,
}

/// The checks made before any weight is read (a bad context, an op the backend declines),
/// and the streaming plan.
fn prepare<B: Backend>(backend: &B, model: &LoadedModel, context: usize, max_memory: Option<u64>) -> Result<StreamPlan, SessionError> {
    check_context(context)?;
    crate::arch::forward::check_supported(backend, model)?;
    Ok(StreamPlan::new(model, max_memory).map_err(WeightError::from)?)
}

impl<B: Backend> Session<B> {
    /// Uploads the weights (`sources[i]` reads `model.files.files[i]`) and allocates a KV
    /// cache of `context` positions (capped at the model's context length).
    pub fn new(
        backend: B,
        model: LoadedModel,
        sources: &[&dyn ByteSource],
        context: usize,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, SessionError> {
        prepare(&backend, &model, context, None)?;
        let weights = Weights::load_with_progress(&backend, &model, sources, progress)?;
        Self::with_weights(backend, model, weights, context)
    }

    /// As [`Session::new`] under a memory budget for device-resident weights: the layers
    /// past the budget stream from `sources` (see `streaming.rs`). `None`: all resident.
    pub fn with_budget(
        backend: B,
        model: LoadedModel,
        sources: Vec<std::sync::Arc<dyn ByteSource>>,
        context: usize,
        max_memory: Option<u64>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, SessionError> {
        let plan = prepare(&backend, &model, context, max_memory)?;
        let weights = Weights::load_planned(&backend, &model, sources, &plan, progress)?;
        Self::with_weights(backend, model, weights, context)
    }

    /// As [`Session::with_budget`], through the packed-weight cache in `cache_dir`
    /// (`packed_cache.rs`; `None`: off). The status says whether the cache was used.
    #[cfg(any(unix, windows))]
    pub fn with_cache(
        backend: B,
        model: LoadedModel,
        sources: Vec<std::sync::Arc<dyn ByteSource>>,
        context: usize,
        max_memory: Option<u64>,
        cache_dir: Option<&std::path::Path>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Self, crate::packed_cache::CacheStatus), SessionError> {
        let plan = prepare(&backend, &model, context, max_memory)?;
        let (weights, status) = Weights::load_cached(&backend, &model, sources, &plan, cache_dir, progress)?;
        Ok((Self::with_weights(backend, model, weights, context)?, status))
    }

    fn with_weights(backend: B, model: LoadedModel, weights: Weights<B>, context: usize) -> Result<Self, SessionError> {
        let rope = RopeTables::new(&model.config, weights.rope_factors.as_deref())?;
        let context = check_context(context)?.min(model.config.context_length as usize);
        let kv = KvCache::new(&backend, &model.config, context)?;
        Ok(Session { backend, model, weights, rope, kv, context })
    }

    /// What a forward pass reads, and the cache it appends to.
    fn net(&mut self) -> (Net<'_, B>, &mut KvCache<B>) {
        (Net { backend: &self.backend, cfg: &self.model.config, weights: &self.weights, rope: &self.rope }, &mut self.kv)
    }

    pub fn backend_name(&self) -> String {
        self.backend.name()
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn weights(&self) -> &Weights<B> {
        &self.weights
    }

    /// Positions the KV cache holds (`min(context_length, requested)`).
    pub fn context(&self) -> usize {
        self.context
    }

    /// Positions cached so far.
    pub fn position(&self) -> usize {
        self.kv.len
    }

    /// Forgets the conversation (the KV cache is reused).
    pub fn reset(&mut self) {
        self.kv.clear();
    }

    fn check_room(&self, new: usize, requested: usize) -> Result<(), SessionError> {
        let tokens = self.kv.len + new + requested;
        if tokens > self.context {
            return Err(SessionError::ContextOverflow { tokens, context: self.context, prompt: self.kv.len + new, requested });
        }
        Ok(())
    }

    /// Appends `ids` and returns the logits of the last one (`vocab_size` values).
    pub async fn prefill(&mut self, ids: &[u32]) -> Result<Vec<f32>, SessionError> {
        let out = self.forward_last(ids)?;
        let row = self.backend.read(&out, 0, self.model.config.vocab_size as usize).await?;
        if !row.iter().all(|v| v.is_finite()) {
            return Err(self.explain_non_finite(ids, self.kv.len - 1, None));
        }
        Ok(row)
    }

    /// The error for non-finite logits at `position` after `ids` ran: reruns them with a
    /// check after every layer where the backend can look (see `first_non_finite_layer`).
    fn explain_non_finite(&mut self, ids: &[u32], position: usize, step: Option<usize>) -> SessionError {
        let end = self.kv.len;
        self.kv.len = end - ids.len();
        let (net, kv) = self.net();
        let layer = net.first_non_finite_layer(kv, ids).ok().flatten();
        self.kv.len = end;
        SessionError::NonFinite { position, step, layer }
    }

    /// Appends `ids`; the last one's logits stay on the device (sample them with
    /// [`Session::pick`]).
    pub fn forward_last(&mut self, ids: &[u32]) -> Result<B::Buf, SessionError> {
        if ids.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        self.check_room(ids.len(), 0)?;
        let (net, kv) = self.net();
        Ok(net.forward(kv, ids, Logits::Last)?)
    }

    /// Samples from logits on the device, reading back only what the sampler needs (the
    /// device's top-k when it can, the whole row otherwise). The sampler's settings are
    /// checked first; non-finite logits are an error (`NonFinite` without step or layer:
    /// `step` adds them), never a token: the device's top-k puts any NaN or infinity first.
    pub async fn pick(&self, logits: &B::Buf, sampler: &mut Sampler, history: &[u32]) -> Result<u32, SessionError> {
        self.pick_row(logits, 0, self.kv.len.saturating_sub(1), sampler, history).await
    }

    /// As [`Session::pick`] from row `row` of a batch's logits (see
    /// [`Session::forward_sequences`]); `position` is the row's position in its sequence
    /// (for the error when its logits are not finite).
    pub async fn pick_row(&self, logits: &B::Buf, row: usize, position: usize, sampler: &mut Sampler, history: &[u32]) -> Result<u32, SessionError> {
        sampler.config.validate()?;
        let vocab = self.model.config.vocab_size as usize;
        let non_finite = || SessionError::NonFinite { position, step: None, layer: None };
        match sampler.candidates_needed() {
            Some(k) if k <= MAX_DEVICE_TOP_K => {
                // The device's top-k reads a whole buffer: a later row is copied out first.
                let one;
                let logits = if row == 0 {
                    logits
                } else {
                    let mut buf = self.backend.alloc(vocab)?;
                    self.backend.copy_rows(&mut buf, 0, logits, row, 1, vocab)?;
                    one = buf;
                    &one
                };
                let top = self.backend.top_k(logits, vocab, k).await?;
                if top.first().is_some_and(|c| !c.1.is_finite()) {
                    return Err(non_finite());
                }
                Ok(sampler.sample_sorted(&top))
            }
            _ => {
                let row = self.backend.read(logits, row * vocab, vocab).await?;
                if !row.iter().all(|v| v.is_finite()) {
                    return Err(non_finite());
                }
                Ok(sampler.sample(&row, history))
            }
        }
    }

    /// The log-probability of `token` (sampled from row `row` of a batch's logits, see
    /// [`Session::pick_row`]) and of the row's `top` most likely tokens.
    pub async fn row_logprobs(&self, logits: &B::Buf, row: usize, token: u32, top: usize) -> Result<crate::sampler::TokenLogprobs, SessionError> {
        let vocab = self.model.config.vocab_size as usize;
        let row = self.backend.read(logits, row * vocab, vocab).await?;
        Ok(crate::sampler::logprobs(&row, token, top))
    }

    /// A new sequence of its own KV cache of `context` positions (capped at the model's
    /// context length), for [`Session::forward_sequences`]: what a server's slot holds.
    pub fn new_sequence(&self, context: usize) -> Result<Sequence<B>, SessionError> {
        let context = check_context(context)?.min(self.model.config.context_length as usize);
        Ok(Sequence { kv: KvCache::new(&self.backend, &self.model.config, context)?, tokens: Vec::new() })
    }

    /// Appends each sequence's tokens to it in one batched forward pass (a prompt or a
    /// chunk of one beside single decoded tokens) and returns the logits of each one's
    /// last token, stacked in batch order: `[batch.len(), vocab]` on the device (sample
    /// row `i` with [`Session::pick_row`]). Each row equals what the sequence gets alone.
    /// On an error no sequence advances; errors name the sequence by its batch index.
    pub fn forward_sequences(&self, batch: &mut [(&mut Sequence<B>, &[u32])]) -> Result<B::Buf, SessionError> {
        let name = |i: usize| if batch.len() == 1 { String::new() } else { format!("sequence {i} of the batch: ") };
        for (i, (seq, ids)) in batch.iter().enumerate() {
            if ids.is_empty() {
                return Err(SessionError::EmptyPrompt);
            }
            let tokens = seq.kv.len + ids.len();
            if tokens > seq.kv.capacity {
                return Err(SessionError::SequenceFull { sequence: name(i), tokens, context: seq.kv.capacity });
            }
        }
        let net = Net { backend: &self.backend, cfg: &self.model.config, weights: &self.weights, rope: &self.rope };
        let mut seqs: Vec<Seq<'_, B>> = batch.iter_mut().map(|(s, ids)| Seq { kv: &mut s.kv, tokens: ids, logits: Logits::Last }).collect();
        let out = net.forward_batch(&mut seqs)?;
        drop(seqs);
        for (s, ids) in batch.iter_mut() {
            s.tokens.extend_from_slice(ids);
        }
        Ok(out)
    }

    /// Logits at every position of `ids` (`[ids.len(), vocab]` flattened).
    pub async fn score(&mut self, ids: &[u32]) -> Result<Vec<f32>, SessionError> {
        if ids.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        self.check_room(ids.len(), 0)?;
        let (net, kv) = self.net();
        let out = net.forward(kv, ids, Logits::All)?;
        let rows = self.backend.read(&out, 0, ids.len() * self.model.config.vocab_size as usize).await?;
        if let Some(bad) = rows.iter().position(|v| !v.is_finite()) {
            let position = self.kv.len - ids.len() + bad / self.model.config.vocab_size as usize;
            return Err(self.explain_non_finite(ids, position, None));
        }
        Ok(rows)
    }

    /// Appends one token and returns the next logits.
    pub async fn decode_step(&mut self, id: u32) -> Result<Vec<f32>, SessionError> {
        self.prefill(&[id]).await
    }

    /// Starts generating up to `max_tokens` after `prompt`; advance it with
    /// [`Session::step`]. Nothing runs until the first step.
    pub fn begin(&self, prompt: &[u32], max_tokens: usize) -> Result<Stepper<B::Buf>, SessionError> {
        if prompt.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        self.check_room(prompt.len(), max_tokens)?;
        Ok(Stepper {
            logits: None,
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            max_tokens,
            text: TextStream::new(),
            emitted: 0,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            stop: None,
        })
    }

    /// One token of `g`: runs the model (the prompt on the first step, the previous token
    /// after), samples, and returns the new text: whole UTF-8 characters only, so it may be
    /// empty. `None` once generation has stopped (see `g.stop`). The last sampled token is
    /// not run through the model (that would cost a forward pass nobody reads): to continue
    /// the same sequence, pass it to `decode_step` first.
    pub async fn step(&mut self, g: &mut Stepper<B::Buf>, tokenizer: &Tokenizer, sampler: &mut Sampler) -> Result<Option<String>, SessionError> {
        if g.stop.is_some() {
            return Ok(None);
        }
        if g.text.tokens().len() == g.max_tokens {
            return Ok(g.finish(StopReason::MaxTokens));
        }
        let clock = Clock::start();
        let ran = if g.logits.take().is_none() { g.history.len() } else { 1 };
        let ids = &g.history[g.history.len() - ran..];
        let logits = self.forward_last(ids)?;
        let next = match self.pick(&logits, sampler, &g.history).await {
            Err(SessionError::NonFinite { position, .. }) => {
                g.stop = Some(StopReason::Cancelled);
                let ids = ids.to_vec();
                return Err(self.explain_non_finite(&ids, position, Some(g.text.tokens().len())));
            }
            r => r?,
        };
        g.logits = Some(logits);
        if g.text.tokens().is_empty() {
            g.prefill = clock.elapsed();
        } else {
            g.decode += clock.elapsed();
        }
        if self.model.config.eog_token_ids.contains(&next) {
            return Ok(g.finish(StopReason::EndOfGeneration));
        }
        g.history.push(next);
        // Decoded incrementally (not the whole text again each token).
        g.text.push(tokenizer, next)?;
        // Hold back a trailing replacement character: the rest of a multi-token character
        // may still come.
        let text = g.text.text();
        let stable = text.trim_end_matches('\u{fffd}').len().max(g.emitted);
        let piece = text[g.emitted..stable].to_string();
        g.emitted = stable;
        Ok(Some(piece))
    }

    /// Generates up to `max_tokens` after `prompt`. `on_text` receives each new piece of
    /// text (whole UTF-8 characters only) and returns `false` to stop.
    pub async fn generate(
        &mut self,
        tokenizer: &Tokenizer,
        prompt: &[u32],
        max_tokens: usize,
        sampler: &mut Sampler,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, SessionError> {
        let mut g = self.begin(prompt, max_tokens)?;
        while let Some(piece) = self.step(&mut g, tokenizer, sampler).await? {
            if !piece.is_empty() && !on_text(&piece) {
                g.cancel();
                break;
            }
        }
        Ok(g.result())
    }
}

/// A generation in progress (see [`Session::begin`]).
pub struct Stepper<Buf> {
    /// The logits the last step sampled from; `None` before the prompt has run.
    logits: Option<Buf>,
    /// Prompt and sampled tokens (the repetition penalty's window).
    history: Vec<u32>,
    prompt_len: usize,
    max_tokens: usize,
    /// The sampled tokens and their text.
    text: TextStream,
    /// Bytes of `text` already returned.
    emitted: usize,
    prefill: Duration,
    decode: Duration,
    stop: Option<StopReason>,
}

impl<Buf> Stepper<Buf> {
    /// Stops; the text held back (an unfinished character) is returned.
    fn finish(&mut self, reason: StopReason) -> Option<String> {
        self.stop = Some(reason);
        self.logits = None;
        let text = self.text.text();
        let rest = text[self.emitted..].to_string();
        self.emitted = text.len();
        (!rest.is_empty()).then_some(rest)
    }

    /// Stops at the caller's request (what was held back is dropped).
    pub fn cancel(&mut self) {
        self.stop = Some(StopReason::Cancelled);
        self.logits = None;
    }

    pub fn stop(&self) -> Option<StopReason> {
        self.stop
    }

    pub fn tokens(&self) -> &[u32] {
        self.text.tokens()
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Time of the first step (the prompt and the first token) and of the later ones.
    pub fn timings(&self) -> (Duration, Duration) {
        (self.prefill, self.decode)
    }

    pub fn result(self) -> Generation {
        Generation { tokens: self.text.tokens().to_vec(), text: self.text.into_text(), stop: self.stop.unwrap_or(StopReason::MaxTokens), prefill: self.prefill, decode: self.decode }
    }
}

/// One sequence of a batch (see [`Session::forward_sequences`]): its own KV cache and the
/// tokens whose keys and values it holds, kept between requests so that the next one
/// reuses what they share (a chat's next turn does not recompute the conversation).
pub struct Sequence<B: Backend> {
    kv: KvCache<B>,
    tokens: Vec<u32>,
}

impl<B: Backend> Sequence<B> {
    /// The tokens the cache holds, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Positions the cache holds at most.
    pub fn context(&self) -> usize {
        self.kv.capacity
    }

    /// Forgets every token (the cache's memory is kept).
    pub fn clear(&mut self) {
        self.keep(0);
    }

    /// Keeps the first `n` tokens (fewer when it holds fewer) and forgets the rest.
    pub fn keep(&mut self, n: usize) {
        let n = n.min(self.tokens.len());
        self.tokens.truncate(n);
        self.kv.len = n;
    }

    /// Keeps the longest prefix this sequence shares with `prompt`, less one token when it
    /// would hold all of `prompt` (its last token must run: its logits are what the next
    /// token is sampled from), and returns how many tokens it kept: run `prompt[kept..]`.
    /// Sound because a cached position depends only on the tokens up to it.
    pub fn keep_common_prefix(&mut self, prompt: &[u32]) -> usize {
        let common = self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let kept = common.min(prompt.len().saturating_sub(1));
        self.keep(kept);
        kept
    }
}
