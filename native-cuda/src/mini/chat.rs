//! The SmolLM2-Instruct chat prompt (ChatML) of sparsevlm-mini, with an image placeholder in the user turn.
//!
//! Ports the `tokenizer.chat_template` stored in the SmolLM2-135M-Instruct GGUF (the same Jinja template as
//! its HF `tokenizer_config.json`):
//!
//! ```jinja
//! {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}
//! {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}
//! {% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
//! {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
//! ```
//!
//! so a conversation without a system message gets the default one. The image is placed as LLaVA does
//! (`llava/mm_utils.py::tokenizer_image_token`): the prompt text is split on `"<image>"`, each chunk is
//! tokenized on its own, and [`IMAGE_TOKEN_INDEX`] (−200) marks where the caller splices the image features.

use tokenizers::Tokenizer;

pub use crate::tokenize::{IMAGE_MARKER, IMAGE_TOKEN_INDEX};

use crate::error::{Error, Result};
use crate::mini::gguf::GgufTokenizer;
use crate::tokenize::TokenizeError;

/// Start of a ChatML turn.
pub const IM_START: &str = "<|im_start|>";
/// End of a ChatML turn: the assistant's answer ends here.
pub const IM_END: &str = "<|im_end|>";
/// End of a document; also stops generation.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// The system message the template inserts when the conversation has none.
pub const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The chat template's output for one user message with `add_generation_prompt = true`. `system: None`
/// gives the template's default system message, exactly as the Jinja template does.
pub fn render(system: Option<&str>, user: &str) -> String {
    let system = system.unwrap_or(DEFAULT_SYSTEM);
    format!("{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n")
}

/// A user message with the image first, on its own line (LLaVA-1.5's `"<image>\n{question}"`).
pub fn user_with_image(question: &str) -> String {
    format!("{IMAGE_MARKER}\n{question}")
}

/// Whether a GGUF's `tokenizer.chat_template` is the ChatML template that [`render`] reproduces (with the
/// same default system message).
pub fn template_is_supported(template: &str) -> bool {
    // Jinja string literals may hold a newline or the escape `\n`; compare with real newlines.
    let template = template.replace("\\n", "\n");
    let turn = "'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'";
    template.contains(&format!("{IM_START}system\n{DEFAULT_SYSTEM}{IM_END}\n"))
        && template.contains(turn)
        && template.contains(&format!("{IM_START}assistant\n"))
}

/// Tokenizes SmolLM2 chat prompts; knows the special tokens and the stop tokens.
#[derive(Debug, Clone)]
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    im_start: u32,
    im_end: u32,
    end_of_text: u32,
}

/// The id of `token`, which must be a special (added) token.
fn special_id(tokenizer: &Tokenizer, token: &str) -> Result<u32> {
    let id = tokenizer
        .token_to_id(token)
        .ok_or_else(|| Error::Input(format!("the tokenizer has no {token} token (not a ChatML model?)")))?;
    if !tokenizer.get_added_tokens_decoder().get(&id).is_some_and(|t| t.special) {
        return Err(Error::Input(format!("{token} (id {id}) is not a special token of the tokenizer")));
    }
    Ok(id)
}

impl ChatTokenizer {
    /// Wraps a tokenizer with the ChatML special tokens `<|im_start|>`, `<|im_end|>`, `<|endoftext|>`.
    pub fn new(tokenizer: Tokenizer) -> Result<Self> {
        let im_start = special_id(&tokenizer, IM_START)?;
        let im_end = special_id(&tokenizer, IM_END)?;
        let end_of_text = special_id(&tokenizer, END_OF_TEXT)?;
        Ok(ChatTokenizer { tokenizer, im_start, im_end, end_of_text })
    }

    /// The chat tokenizer of a GGUF model.
    pub fn from_gguf(gguf: &GgufTokenizer) -> Result<Self> {
        Self::new(gguf.tokenizer.clone())
    }

    /// Tokenizes rendered prompt text (no BOS: the template adds none). Every `"<image>"` becomes one
    /// [`IMAGE_TOKEN_INDEX`]; the text around it is tokenized chunk by chunk. `[L]`
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>> {
        if prompt.is_empty() {
            return Err(TokenizeError::EmptyPrompt.into());
        }
        let mut ids = Vec::new();
        for (i, chunk) in prompt.split(IMAGE_MARKER).enumerate() {
            if i > 0 {
                ids.push(IMAGE_TOKEN_INDEX);
            }
            if !chunk.is_empty() {
                let enc = self.tokenizer.encode(chunk, false).map_err(TokenizeError::Encode)?;
                ids.extend(enc.get_ids().iter().map(|&t| i64::from(t)));
            }
        }
        Ok(ids)
    }

    /// The chat prompt for one question with the default system message, the image (if any) first in the
    /// user turn. `[L]`, the image marked by [`IMAGE_TOKEN_INDEX`].
    pub fn encode_question(&self, question: &str, with_image: bool) -> Result<Vec<i64>> {
        if question.trim().is_empty() {
            return Err(TokenizeError::EmptyQuestion.into());
        }
        let user = if with_image { user_with_image(question) } else { question.to_string() };
        self.encode(&render(None, &user))
    }

    /// Positions of [`IMAGE_TOKEN_INDEX`] in `ids`.
    pub fn image_positions(ids: &[i64]) -> Vec<usize> {
        ids.iter().enumerate().filter(|(_, &t)| t == IMAGE_TOKEN_INDEX).map(|(i, _)| i).collect()
    }

    /// `ids` as vocabulary ids; fails on the image marker or any id outside the vocabulary.
    pub fn text_ids(&self, ids: &[i64]) -> Result<Vec<u32>> {
        let vocab = self.tokenizer.get_vocab_size(true);
        ids.iter()
            .map(|&id| {
                u32::try_from(id)
                    .ok()
                    .filter(|&t| (t as usize) < vocab)
                    .ok_or_else(|| TokenizeError::BadId { id, vocab }.into())
            })
            .collect()
    }

    /// Decodes generated ids, special tokens (`<|im_end|>`, …) left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(self.tokenizer.decode(ids, true).map_err(TokenizeError::Decode)?)
    }

    /// The ids that end an answer: `<|im_end|>` and `<|endoftext|>`.
    pub fn stop_tokens(&self) -> Vec<u32> {
        vec![self.im_end, self.end_of_text]
    }

    /// `<|im_start|>`'s id.
    pub fn im_start(&self) -> u32 {
        self.im_start
    }

    /// `<|im_end|>`'s id.
    pub fn im_end(&self) -> u32 {
        self.im_end
    }

    /// The underlying tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}
