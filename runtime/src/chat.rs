//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template`, or
//! tokenizer_config.json) rendered with minijinja and Python-compatible string methods.

use minijinja::{context, Environment, Error, ErrorKind};
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub struct ChatError(String);

pub struct ChatTemplate {
    env: Environment<'static>,
    pub bos: String,
    pub eos: String,
}

impl ChatTemplate {
    /// `bos` / `eos`: the token texts templates refer to as `bos_token` / `eos_token`.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        // As transformers' apply_chat_template renders (jinja2 trim_blocks, lstrip_blocks).
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(|e| ChatError(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> { Err(Error::new(ErrorKind::InvalidOperation, msg)) });
        env.add_template_owned("chat", source.to_owned()).map_err(|e| ChatError(e.to_string()))?;
        Ok(ChatTemplate { env, bos: bos.into(), eos: eos.into() })
    }

    /// The model's own template (GGUF `tokenizer.chat_template`) with its BOS/EOS texts;
    /// `None` when the file has none.
    pub fn for_model(m: &crate::LoadedModel, tok: &crate::tokenizer::Tokenizer) -> Option<Result<Self, ChatError>> {
        let src = m.files.gguf.as_ref()?.get("tokenizer.chat_template")?.as_str()?;
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_owned();
        Some(ChatTemplate::new(src, &text(tok.bos), &text(tok.eos)))
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt` is set. Tokenize it with `parse_special = true`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        let t = self.env.get_template("chat").map_err(|e| ChatError(e.to_string()))?;
        let messages: Vec<_> = messages.iter().map(|m| context! { role => m.role.as_str(), content => m.content.as_str() }).collect();
        let vars = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        };
        t.render(vars).map_err(|e| ChatError(e.to_string()))
    }
}
