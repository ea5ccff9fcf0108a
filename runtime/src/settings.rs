//! The rules every front end (the CLI, the browser, the coming server) applies to what a
//! user asks for, written once: sampler values, context and token counts, memory sizes.
//! A front end names the setting its own way (`--temp`, `temperature`) through
//! [`SettingError::setting`]; the rule and the wording of what was expected live here.

use std::fmt;

use crate::sampler::SamplerConfig;

/// A user-facing setting, by what it controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Temperature,
    TopP,
    MinP,
    RepetitionPenalty,
    PresencePenalty,
    FrequencyPenalty,
    /// KV-cache positions.
    Context,
    /// Bytes of resident weights.
    MaxMemory,
}

impl Setting {
    /// The name used in messages when the front end has none of its own.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Temperature => "temperature",
            Setting::TopP => "top_p",
            Setting::MinP => "min_p",
            Setting::RepetitionPenalty => "repetition_penalty",
            Setting::PresencePenalty => "presence_penalty",
            Setting::FrequencyPenalty => "frequency_penalty",
            Setting::Context => "context",
            Setting::MaxMemory => "max_memory",
        }
    }
}

/// A setting outside its range, or a size that does not parse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{} = {value}: expected {expected}", setting.name())]
pub struct SettingError {
    pub setting: Setting,
    /// What was given, as the user wrote it or as the number was read.
    pub value: String,
    pub expected: &'static str,
}

impl SettingError {
    fn new(setting: Setting, value: impl fmt::Display, expected: &'static str) -> Self {
        SettingError { setting, value: value.to_string(), expected }
    }

    /// The same error under the front end's name for the setting (`--temp`, `topP`).
    pub fn named(self, name: &'static str) -> NamedSetting {
        NamedSetting { name, error: self }
    }
}

/// A [`SettingError`] as a front end says it: under its own name for the setting.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{name} = {}: expected {}", error.value, error.expected)]
pub struct NamedSetting {
    pub name: &'static str,
    pub error: SettingError,
}

impl SamplerConfig {
    /// Checks every value: a NaN, a negative temperature, `top_p` outside (0, 1], `min_p`
    /// outside [0, 1] or a penalty that is not a positive number would sample something
    /// other than what was asked (a penalty of 0 turns every seen logit into 0 or inf).
    pub fn validate(&self) -> Result<(), SettingError> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(SettingError::new(Setting::Temperature, t, "a finite number >= 0 (0 is greedy)"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SettingError::new(Setting::TopP, self.top_p, "a number in (0, 1] (1 is off)"));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(SettingError::new(Setting::MinP, self.min_p, "a number in [0, 1] (0 is off)"));
        }
        let p = self.repetition_penalty;
        if !(p.is_finite() && p > 0.0) {
            return Err(SettingError::new(Setting::RepetitionPenalty, p, "a finite number > 0 (1 is off)"));
        }
        // OpenAI's range for both.
        for (setting, p) in [(Setting::PresencePenalty, self.presence_penalty), (Setting::FrequencyPenalty, self.frequency_penalty)] {
            if !(-2.0..=2.0).contains(&p) {
                return Err(SettingError::new(setting, p, "a number in [-2, 2] (0 is off)"));
            }
        }
        Ok(())
    }
}

/// KV-cache positions: at least one (the model's context length caps it later).
pub fn check_context(positions: usize) -> Result<usize, SettingError> {
    if positions == 0 {
        return Err(SettingError::new(Setting::Context, 0, "at least 1 position"));
    }
    Ok(positions)
}

/// A memory budget in bytes: positive and finite (a JavaScript number, a parsed size).
pub fn check_bytes(bytes: f64) -> Result<u64, SettingError> {
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(SettingError::new(Setting::MaxMemory, bytes, "a positive number of bytes"));
    }
    Ok(bytes as u64)
}

/// A size as people write it: `123`, `64K`, `40M`, `40MiB`, `1.5G`, `1.5GiB` (binary: K, M,
/// G, T with or without `iB`, the convention of llama.cpp's and most tools' flags) or `40MB`,
/// `1.5GB` (decimal, as SI and disk vendors mean it). Case-insensitive, spaces allowed
/// before the unit.
pub fn parse_size(text: &str) -> Result<u64, SettingError> {
    const EXPECTED: &str = "a size such as 512M, 40MiB, 40MB or 1.5G";
    let bad = || SettingError::new(Setting::MaxMemory, format!("{text:?}"), EXPECTED);
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.to_ascii_uppercase();
    let (power, decimal) = match unit.as_str() {
        "" | "B" => (0, false),
        "K" | "KIB" => (1, false),
        "M" | "MIB" => (2, false),
        "G" | "GIB" => (3, false),
        "T" | "TIB" => (4, false),
        "KB" => (1, true),
        "MB" => (2, true),
        "GB" => (3, true),
        "TB" => (4, true),
        _ => return Err(bad()),
    };
    let base: f64 = if decimal { 1000.0 } else { 1024.0 };
    check_bytes(value * base.powi(power)).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_spelling() {
        let mib = 1u64 << 20;
        for (text, want) in [
            ("40M", 40 * mib),
            ("40MiB", 40 * mib),
            ("40mib", 40 * mib),
            ("40 MiB", 40 * mib),
            ("40MB", 40_000_000),
            ("1.5G", 3 << 29),
            ("1.5GiB", 3 << 29),
            ("1.5GB", 1_500_000_000),
            ("123", 123),
            ("64K", 64 << 10),
            ("2T", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for text in ["", "M", "0", "0.1", "-1G", "1.5X", "1..5G", "nanM", "infG", "1e400"] {
            let e = parse_size(text).unwrap_err();
            assert_eq!(e.setting, Setting::MaxMemory, "{text}");
        }
    }

    #[test]
    fn sampler_values_out_of_range_are_named() {
        let ok = SamplerConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(SamplerConfig::greedy().validate(), Ok(()));
        let cases = [
            (SamplerConfig { temperature: -1.0, ..ok.clone() }, Setting::Temperature),
            (SamplerConfig { temperature: f32::NAN, ..ok.clone() }, Setting::Temperature),
            (SamplerConfig { temperature: f32::INFINITY, ..ok.clone() }, Setting::Temperature),
            (SamplerConfig { top_p: 2.0, ..ok.clone() }, Setting::TopP),
            (SamplerConfig { top_p: 0.0, ..ok.clone() }, Setting::TopP),
            (SamplerConfig { top_p: f32::NAN, ..ok.clone() }, Setting::TopP),
            (SamplerConfig { min_p: 2.0, ..ok.clone() }, Setting::MinP),
            (SamplerConfig { min_p: -0.1, ..ok.clone() }, Setting::MinP),
            (SamplerConfig { min_p: f32::NAN, ..ok.clone() }, Setting::MinP),
            (SamplerConfig { repetition_penalty: 0.0, ..ok.clone() }, Setting::RepetitionPenalty),
            (SamplerConfig { repetition_penalty: f32::NAN, ..ok.clone() }, Setting::RepetitionPenalty),
            (SamplerConfig { presence_penalty: 2.5, ..ok.clone() }, Setting::PresencePenalty),
            (SamplerConfig { presence_penalty: f32::NAN, ..ok.clone() }, Setting::PresencePenalty),
            (SamplerConfig { frequency_penalty: -3.0, ..ok.clone() }, Setting::FrequencyPenalty),
        ];
        for (cfg, setting) in cases {
            assert_eq!(cfg.validate().map_err(|e| e.setting), Err(setting), "{cfg:?}");
        }
        let e = SamplerConfig { repetition_penalty: 0.0, ..ok }.validate().unwrap_err();
        assert_eq!(e.named("--repeat-penalty").to_string(), "--repeat-penalty = 0: expected a finite number > 0 (1 is off)");
        assert_eq!(check_context(0).unwrap_err().setting, Setting::Context);
        assert_eq!(check_context(7), Ok(7));
    }
}
