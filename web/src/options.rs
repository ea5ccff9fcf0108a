//! The JavaScript options objects (passed as JSON), parsed with clear errors: an unknown
//! key or a wrong type names the key, so a typo never silently means "default".

use serde::Deserialize;
use strata::sampler::SamplerConfig;
use strata::settings::{self, Setting, SettingError};

use crate::error::WebError;

/// Which backend runs the model.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// WebGPU when an adapter is there and the model loads on it, else wasm CPU.
    #[default]
    Auto,
    Webgpu,
    Wasm,
}

/// `load(source, options)`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LoadOptions {
    pub backend: BackendChoice,
    /// KV-cache positions (capped at the model's context length).
    pub context_length: usize,
    /// Bytes of weights kept resident; the layers past it stream from the model file
    /// (one at a time). `None`: all resident on WebGPU, and on wasm CPU all resident up to
    /// [`WASM_RESIDENT_DEFAULT`] (the wasm heap cannot exceed 4 GiB).
    pub max_memory: Option<f64>,
}

/// Default resident-weight budget of the wasm CPU backend for models larger than it.
pub const WASM_RESIDENT_DEFAULT: u64 = 2 << 30;

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { backend: BackendChoice::Auto, context_length: 2048, max_memory: None }
    }
}

/// `generate(prompt, options)` / `chat(messages, options)`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateOptions {
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<u64>,
}

fn default_max_tokens() -> usize {
    256
}

impl GenerateOptions {
    /// llama.cpp's defaults, overridden by what was given.
    pub fn sampler(&self) -> Result<SamplerConfig, WebError> {
        let d = SamplerConfig::default();
        let c = SamplerConfig {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(d.repetition_penalty),
            repetition_window: d.repetition_window,
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            seed: self.seed.unwrap_or(d.seed),
        };
        c.validate().map_err(|e| WebError::Setting { error: named(e), load: false })?;
        Ok(c)
    }
}

/// `e` under the JavaScript name of its option.
fn named(e: SettingError) -> settings::NamedSetting {
    let name = js_name(e.setting);
    e.named(name)
}

/// The JavaScript option that sets `s` (the runtime's rules, this API's names).
fn js_name(s: Setting) -> &'static str {
    match s {
        Setting::Temperature => "temperature",
        Setting::TopP => "topP",
        Setting::MinP => "minP",
        Setting::RepetitionPenalty => "repetitionPenalty",
        Setting::PresencePenalty => "presencePenalty",
        Setting::FrequencyPenalty => "frequencyPenalty",
        Setting::Context => "contextLength",
        Setting::MaxMemory => "maxMemory",
    }
}

fn parse<T: for<'de> Deserialize<'de>>(what: &'static str, json: &str) -> Result<T, WebError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| WebError::Options { what, message: e.to_string() })
}

pub fn load_options(json: &str) -> Result<LoadOptions, WebError> {
    let o: LoadOptions = parse("load", json)?;
    let refused = |e: SettingError| WebError::Setting { error: named(e), load: true };
    settings::check_context(o.context_length).map_err(refused)?;
    if let Some(m) = o.max_memory {
        settings::check_bytes(m).map_err(refused)?;
    }
    Ok(o)
}

pub fn generate_options(json: &str) -> Result<GenerateOptions, WebError> {
    let o: GenerateOptions = parse("generate", json)?;
    o.sampler()?;
    Ok(o)
}

/// One chat message: `{role, content}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

pub fn chat_messages(json: &str) -> Result<Vec<ChatMessage>, WebError> {
    let m: Vec<ChatMessage> = serde_json::from_str(json).map_err(|e| WebError::Messages { message: e.to_string() })?;
    if m.is_empty() {
        return Err(WebError::NoMessages);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let o = load_options("").unwrap();
        assert_eq!(o, LoadOptions::default());
        let o = load_options(r#"{"backend":"wasm","contextLength":512,"maxMemory":1e8}"#).unwrap();
        assert_eq!((o.backend, o.context_length, o.max_memory), (BackendChoice::Wasm, 512, Some(1e8)));
        let g = generate_options(r#"{"maxTokens":8,"temperature":0}"#).unwrap();
        assert_eq!(g.max_tokens, 8);
        assert_eq!(g.sampler().unwrap().temperature, 0.0);
        assert_eq!(g.sampler().unwrap().top_k, SamplerConfig::default().top_k);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let e = generate_options(r#"{"maxToken":8}"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `maxToken`"), "{e}");
        let e = load_options(r#"{"backend":"cuda"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown variant `cuda`"), "{e}");
        let e = generate_options(r#"{"topP":0}"#).unwrap_err().to_string();
        assert!(e.contains("topP = 0"), "{e}");
        let e = generate_options(r#"{"repetitionPenalty":0}"#).unwrap_err();
        assert!(matches!(&e, WebError::Setting { error, load: false } if error.name == "repetitionPenalty"), "{e:?}");
        let e = e.to_string();
        assert_eq!(e, "repetitionPenalty = 0: expected a finite number > 0 (1 is off)");
        let e = load_options(r#"{"contextLength":0}"#).unwrap_err().to_string();
        assert_eq!(e, "load options: contextLength = 0: expected at least 1 position");
        let e = load_options(r#"{"maxMemory":-1}"#).unwrap_err().to_string();
        assert!(e.contains("maxMemory"), "{e}");
        let e = chat_messages(r#"[{"role":"user"}]"#).unwrap_err().to_string();
        assert!(e.contains("missing field `content`"), "{e}");
        assert!(matches!(chat_messages("[]"), Err(WebError::NoMessages)));
    }
}
