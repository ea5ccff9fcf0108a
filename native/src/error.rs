//! Everything a `strata` command can fail with, typed until `main` prints it.

use std::path::PathBuf;

use strata::backend::BackendError;
use strata::engine::EngineError;
use strata::session::SessionError;
use strata::settings::NamedSetting;

use crate::demo_model::DemoModelError;
use crate::serve::ServeError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value the runtime's rules refuse (`--temp = -1: expected ...`).
    #[error(transparent)]
    Setting(#[from] NamedSetting),
    /// Flags that do not go together or are out of range, beyond what clap checks.
    #[error("{flags}: {expected}")]
    Flags { flags: &'static str, expected: &'static str },
    #[error("-f -: cannot read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("-f {}: {source}", file.display())]
    PromptFile { file: PathBuf, source: std::io::Error },
    #[error("-f {}: not UTF-8 text (invalid byte at offset {offset})", file.display())]
    PromptNotUtf8 { file: PathBuf, offset: usize },
    /// The backend asked for (or chosen by `auto`) could not start.
    #[error("--backend {backend}: {source}{hint}")]
    Backend { backend: &'static str, source: BackendError, hint: &'static str },
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A prompt that encodes to no tokens.
    #[error("{0}: give the prompt text as the PROMPT argument or with -f FILE (-f - reads standard input)")]
    EmptyPrompt(EngineError),
    #[error("cannot read {what}: {source}")]
    Read { what: &'static str, source: std::io::Error },
    /// A model file that cannot be opened or scanned (`inspect --deep`).
    #[error(transparent)]
    Model(#[from] strata::Error),
    #[error(transparent)]
    DemoModel(#[from] DemoModelError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl From<SessionError> for CliError {
    fn from(e: SessionError) -> Self {
        CliError::engine(e.into())
    }
}

impl CliError {
    /// An engine error as the CLI says it; a prompt that encodes to no tokens gets a hint.
    pub fn engine(e: EngineError) -> Self {
        match e {
            EngineError::Session(SessionError::EmptyPrompt) => CliError::EmptyPrompt(e),
            e => CliError::Engine(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a prompt that encodes to nothing gets the hint; settings speak the flag's name.
    #[test]
    fn the_cli_says_each_error_its_way() {
        let e = CliError::from(SessionError::EmptyPrompt);
        assert!(matches!(e, CliError::EmptyPrompt(_)), "{e:?}");
        assert!(e.to_string().ends_with("(-f - reads standard input)"), "{e}");
        let e = CliError::engine(EngineError::NoChatTemplate);
        assert!(matches!(e, CliError::Engine(EngineError::NoChatTemplate)), "{e:?}");
        assert!(!e.to_string().contains("-f FILE"), "{e}");
        let e: CliError = strata::settings::check_context(0).unwrap_err().named("--ctx").into();
        assert_eq!(e.to_string(), "--ctx = 0: expected at least 1 position");
        let e = CliError::Flags { flags: "--parallel and --batch-tokens", expected: "at least 1" };
        assert_eq!(e.to_string(), "--parallel and --batch-tokens: at least 1");
    }
}
