//! Token sampling from final logits: repetition penalty, then temperature, then the
//! top-k / top-p / min-p filters, then a seeded draw. `temperature == 0` is greedy.
//! The order and the penalty rule follow llama.cpp's samplers.

use crate::backend::top_k;

/// Sampling settings. The defaults are llama.cpp's CLI defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = off).
    pub top_p: f32,
    /// Drop tokens below `min_p` times the top token's probability (0 = off).
    pub min_p: f32,
    /// Divide positive / multiply negative logits of recently seen tokens (1 = off).
    pub repetition_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repetition_window: usize,
    /// Subtracted from the logit of every token seen in the window (OpenAI's
    /// `presence_penalty`, llama.cpp's `--presence-penalty`; 0 = off).
    pub presence_penalty: f32,
    /// Subtracted once per occurrence in the window (`frequency_penalty`; 0 = off).
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repetition_penalty: 1.0, repetition_window: 64, presence_penalty: 0.0, frequency_penalty: 0.0, seed: 0 }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        SamplerConfig { temperature: 0.0, ..Self::default() }
    }

    /// Whether any penalty changes logits by the history (then the whole row is needed).
    pub fn penalized(&self) -> bool {
        self.repetition_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }
}

/// A seeded sampler. Same seed, same logits, same history -> same token, on every target.
#[derive(Clone, Debug)]
pub struct Sampler {
    pub config: SamplerConfig,
    state: u64,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let state = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        Sampler { config, state }
    }

    /// SplitMix64: small, portable, good enough for sampling.
    fn next_f64(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Picks the next token from `logits` given the tokens generated so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = self.config.clone();
        let mut l = logits.to_vec();
        if c.penalized() {
            // llama.cpp's penalties sampler: per distinct token of the window, the
            // repetition penalty, then `count * frequency + presence`.
            let start = history.len().saturating_sub(c.repetition_window);
            let mut seen: Vec<u32> = history[start..].to_vec();
            seen.sort_unstable();
            for run in seen.chunk_by(|a, b| a == b) {
                if let Some(x) = l.get_mut(run[0] as usize) {
                    if c.repetition_penalty != 1.0 {
                        *x = if *x > 0.0 { *x / c.repetition_penalty } else { *x * c.repetition_penalty };
                    }
                    *x -= run.len() as f32 * c.frequency_penalty + c.presence_penalty;
                }
            }
        }
        if c.temperature <= 0.0 {
            return argmax(&l) as u32;
        }
        // Candidates sorted by logit, highest first (ties: lower id first).
        let mut cand: Vec<(u32, f32)> = l.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            cand.truncate(c.top_k);
        }
        self.sample_sorted(&cand)
    }

    /// What this sampler needs from the logits when there is no repetition penalty: the
    /// `k` best (id, logit) pairs, or `None` for the whole row. A backend computes those
    /// on the device, so a decode step reads back k pairs instead of the vocabulary.
    pub fn candidates_needed(&self) -> Option<usize> {
        let c = &self.config;
        if c.penalized() {
            return None;
        }
        if c.temperature <= 0.0 {
            return Some(1);
        }
        (c.top_k > 0).then_some(c.top_k)
    }

    /// Picks from `cand`, the top candidates sorted by logit (highest first, ties to the
    /// lower id; at least `candidates_needed()` of them, or all). Same draw as `sample` on
    /// the full logits with the same state.
    pub fn sample_sorted(&mut self, cand: &[(u32, f32)]) -> u32 {
        let c = self.config.clone();
        let Some(&(first, _)) = cand.first() else { return 0 };
        if c.temperature <= 0.0 {
            return first;
        }
        let cand = if c.top_k > 0 { &cand[..c.top_k.min(cand.len())] } else { cand };
        let max = cand[0].1 / c.temperature;
        let mut probs: Vec<f64> = cand.iter().map(|&(_, x)| f64::from(x / c.temperature - max).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        let mut keep = probs.len();
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= f64::from(c.top_p) {
                    keep = keep.min(i + 1);
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let floor = probs[0] * f64::from(c.min_p);
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        let kept: f64 = probs[..keep].iter().sum();
        let mut r = self.next_f64() * kept;
        for (i, p) in probs[..keep].iter().enumerate() {
            if r < *p {
                return cand[i].0;
            }
            r -= p;
        }
        cand[keep - 1].0
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}


/// A sampled token's log-probability and its most likely alternatives': the model's own
/// distribution (log-softmax of the raw logits, before penalties, temperature and
/// truncation), as OpenAI's `logprobs` and llama-server's `n_probs` report it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// Up to the `top` asked for, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// The most alternatives [`logprobs`] reports (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// [`TokenLogprobs`] of `token` from one row of finite logits, with `top` alternatives.
pub fn logprobs(logits: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // log sum exp in f64: 50k-260k terms.
    let log_sum = (logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>()).ln() as f32 + max;
    let lp = |i: usize| logits[i] - log_sum;
    TokenLogprobs {
        token,
        logprob: lp(token as usize),
        top: top_k(logits, top.min(MAX_TOP_LOGPROBS)).into_iter().map(|i| (i as u32, lp(i))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass path and the selection path give the same indices in the same order,
    /// with ties (lower index first) and non-finite values (first) in the input.
    /// Logits ln 1 .. ln 4 (plus any constant): probabilities 1/10 .. 4/10.
    #[test]
    fn logprobs_are_the_log_softmax() {
        let logits: Vec<f32> = [1f32, 2.0, 3.0, 4.0].iter().map(|p| p.ln() + 30.0).collect();
        let r = logprobs(&logits, 1, 3);
        assert_eq!(r.token, 1);
        assert!((r.logprob - 0.2f32.ln()).abs() < 1e-6, "{r:?}");
        let want = [(3u32, 0.4f32), (2, 0.3), (1, 0.2)];
        assert_eq!(r.top.len(), 3);
        for ((id, lp), (wid, p)) in r.top.iter().zip(want) {
            assert_eq!(*id, wid);
            assert!((lp - p.ln()).abs() < 1e-6, "{r:?}");
        }
        assert_eq!(logprobs(&logits, 0, 0).top, vec![]);
        assert_eq!(logprobs(&logits, 0, 99).top.len(), 4);
    }

    fn counts(cfg: SamplerConfig, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(cfg);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.sample(logits, &[]) as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_is_argmax_and_ties_take_the_lowest_id() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 2.0], &[]), 1);
    }

    #[test]
    fn temperature_follows_the_softmax() {
        // logits ln(1), ln(3): probabilities 1/4 and 3/4.
        let logits = [0.0f32, 3f32.ln()];
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() };
        let c = counts(cfg, &logits, 40_000);
        let frac = c[1] as f64 / 40_000.0;
        assert!((frac - 0.75).abs() < 0.01, "{frac}");
    }

    #[test]
    fn filters_cut_the_tail() {
        let logits = [5.0f32, 4.0, 0.0, -1.0, -2.0];
        let base = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() };
        let c = counts(SamplerConfig { top_k: 2, ..base.clone() }, &logits, 5000);
        assert!(c[2..].iter().all(|&n| n == 0) && c[0] > 0 && c[1] > 0);
        // p(0) = 0.72, p(1) = 0.27: top_p 0.5 keeps only token 0.
        let c = counts(SamplerConfig { top_p: 0.5, ..base.clone() }, &logits, 2000);
        assert_eq!(c[0], 2000);
        // min_p 0.1: token 2 has 0.0067/0.72 < 0.1 of the top: dropped; token 1 kept.
        let c = counts(SamplerConfig { min_p: 0.1, ..base }, &logits, 5000);
        assert!(c[2..].iter().all(|&n| n == 0) && c[1] > 0);
    }

    #[test]
    fn presence_and_frequency_penalties_follow_llama_cpp() {
        let greedy = |presence, frequency, repetition| Sampler::new(SamplerConfig { presence_penalty: presence, frequency_penalty: frequency, repetition_penalty: repetition, ..SamplerConfig::greedy() });
        let l = [3.0, 2.6, 0.0];
        // Token 0 seen twice: frequency 0.25 takes 0.5 (3.0 -> 2.5 < 2.6), 0.15 takes 0.3.
        assert_eq!(greedy(0.0, 0.25, 1.0).sample(&l, &[0, 0]), 1);
        assert_eq!(greedy(0.0, 0.15, 1.0).sample(&l, &[0, 0]), 0);
        // Presence counts once however often: 0.5 -> 2.5, 0.3 -> 2.7.
        assert_eq!(greedy(0.5, 0.0, 1.0).sample(&l, &[0, 0, 0]), 1);
        assert_eq!(greedy(0.3, 0.0, 1.0).sample(&l, &[0, 0, 0]), 0);
        // Repetition first, then frequency: 3.0 / 1.2 - 2 * 0.1 = 2.3.
        assert_eq!(greedy(0.0, 0.1, 1.2).sample(&l, &[0, 0]), 1);
        // A negative penalty favours what was seen; tokens outside the window are not counted.
        assert_eq!(greedy(-0.5, 0.0, 1.0).sample(&[2.6, 3.0], &[0]), 0);
        let mut windowed = Sampler::new(SamplerConfig { presence_penalty: 1.0, repetition_window: 1, ..SamplerConfig::greedy() });
        assert_eq!(windowed.sample(&l, &[0, 1]), 0, "token 0 is out of a window of 1");
    }

    #[test]
    fn repetition_penalty_follows_llama_cpp() {
        let mut s = Sampler::new(SamplerConfig { repetition_penalty: 2.0, ..SamplerConfig::greedy() });
        // Token 0 (3.0 -> 1.5) loses to token 1 (2.0) once seen.
        assert_eq!(s.sample(&[3.0, 2.0], &[]), 0);
        assert_eq!(s.sample(&[3.0, 2.0], &[0]), 1);
        // Negative logits are multiplied: -1 -> -2 loses to -1.5.
        assert_eq!(s.sample(&[-1.0, -1.5], &[0]), 1);
    }

    #[test]
    fn sampling_from_top_k_candidates_equals_sampling_from_the_row() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 7919 % 1000) as f32 * 0.013).sin() * 4.0).collect();
        for cfg in [SamplerConfig::default(), SamplerConfig::greedy(), SamplerConfig { top_k: 5, temperature: 1.3, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() }] {
            let (mut full, mut cands) = (Sampler::new(cfg.clone()), Sampler::new(cfg.clone()));
            let k = cands.candidates_needed().unwrap();
            let top: Vec<(u32, f32)> = top_k(&logits, k).into_iter().map(|i| (i as u32, logits[i])).collect();
            for _ in 0..50 {
                assert_eq!(full.sample(&logits, &[]), cands.sample_sorted(&top), "{cfg:?}");
            }
        }
        assert_eq!(Sampler::new(SamplerConfig { repetition_penalty: 1.1, ..SamplerConfig::default() }).candidates_needed(), None);
        assert_eq!(Sampler::new(SamplerConfig { presence_penalty: 0.5, ..SamplerConfig::default() }).candidates_needed(), None);
        assert_eq!(Sampler::new(SamplerConfig { frequency_penalty: -0.5, ..SamplerConfig::default() }).candidates_needed(), None);
        assert_eq!(Sampler::new(SamplerConfig { top_k: 0, ..SamplerConfig::default() }).candidates_needed(), None);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let cfg = SamplerConfig { seed: 42, ..SamplerConfig::default() };
        let run = |cfg: SamplerConfig| {
            let mut s = Sampler::new(cfg);
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(cfg.clone()), run(cfg.clone()));
        assert_ne!(run(cfg.clone()), run(SamplerConfig { seed: 43, ..cfg }));
    }
}
