//! Prompts and tokenization for LLaVA-1.5.
//!
//! Ports:
//! - LLaVA `llava/conversation.py::conv_vicuna_v1` (`SeparatorStyle.TWO`, sep `" "`, sep2 `"</s>"`) as
//!   [`PromptTemplate::VicunaV1`], the template of SparseVLM's evaluation scripts (`--conv-mode vicuna_v1`),
//!   and the `llava-hf/llava-1.5-*-hf` chat template as [`PromptTemplate::LlavaHf`];
//! - LLaVA `llava/mm_utils.py::tokenizer_image_token`: the prompt is split on `"<image>"`, every chunk is
//!   tokenized with BOS, the BOS of later chunks is dropped, and the placeholder `IMAGE_TOKEN_INDEX = -200`
//!   goes between chunks ([`ImageToken::Placeholder`]);
//! - transformers' llava-hf processor, where `"<image>"` is a special token of `tokenizer.json`
//!   ([`ImageToken::Special`]).
//!
//! Only HF `tokenizer.json` files (the `tokenizers` crate) are read; a sentencepiece `tokenizer.model`
//! alone is rejected with instructions to convert it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;
use tokenizers::Tokenizer;

/// The image marker in prompt text.
pub const IMAGE_MARKER: &str = "<image>";
/// LLaVA's `IMAGE_TOKEN_INDEX`: the id that stands for the image in original-LLaVA `input_ids`.
pub const IMAGE_TOKEN_INDEX: i64 = -200;
/// The system message of `conv_vicuna_v1` (and `conv_llava_v1`).
pub const VICUNA_V1_SYSTEM: &str = "A chat between a curious human and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the human's questions.";

/// Errors of prompt building and tokenization.
#[derive(Debug, Error)]
pub enum TokenizeError {
    #[error("tokenizer file not found: {}", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "{} has only a sentencepiece tokenizer.model, but tokenizer.json is required; create it with: \
         python -c \"from transformers import AutoTokenizer; d = '{dir}'; \
         AutoTokenizer.from_pretrained(d).save_pretrained(d)\"",
        dir.display(),
        dir = dir.display()
    )]
    SentencePieceOnly { dir: PathBuf },
    #[error("cannot load tokenizer {}: {source}", path.display())]
    Load { path: PathBuf, source: tokenizers::Error },
    #[error("tokenizer has no end-of-sequence token {token:?}")]
    NoEos { token: String },
    #[error("tokenizer has no special token \"<image>\" with id {id} (found {found:?})")]
    NoImageToken { id: u32, found: Option<u32> },
    #[error("image placeholder id {0} must be negative so it cannot clash with the vocabulary")]
    BadPlaceholder(i64),
    #[error("empty prompt")]
    EmptyPrompt,
    #[error("empty question")]
    EmptyQuestion,
    #[error("prompt has no image token \"<image>\"")]
    NoImage,
    #[error("the tokenizer split \"<image>\" into ordinary tokens: {expected} images in the text, {found} image ids")]
    ImageNotSpecial { expected: usize, found: usize },
    #[error("tokenization failed: {0}")]
    Encode(tokenizers::Error),
    #[error("decoding failed: {0}")]
    Decode(tokenizers::Error),
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    BadId { id: i64, vocab: usize },
    #[error("unknown prompt template {0:?} (expected vicuna_v1, llava_v1 or llava_hf)")]
    UnknownTemplate(String),
}

/// How a question becomes a LLaVA-1.5 prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptTemplate {
    /// `"{system} USER: <image>\n{question} ASSISTANT:"` (original LLaVA, SparseVLM's scripts).
    VicunaV1,
    /// `"USER: <image>\n{question} ASSISTANT:"` (llava-hf chat template).
    LlavaHf,
}

impl PromptTemplate {
    /// Port of `Conversation.get_prompt` (`SeparatorStyle.TWO`) for one user turn with an image, the
    /// assistant's turn left open. As in LLaVA's `run_llava.py`, `"<image>\n"` is prepended unless the
    /// question already places `"<image>"` itself.
    pub fn render(&self, question: &str) -> Result<String, TokenizeError> {
        if question.trim().is_empty() {
            return Err(TokenizeError::EmptyQuestion);
        }
        let content =
            if question.contains(IMAGE_MARKER) { question.to_string() } else { format!("{IMAGE_MARKER}\n{question}") };
        Ok(match self {
            Self::VicunaV1 => format!("{VICUNA_V1_SYSTEM} USER: {content} ASSISTANT:"),
            Self::LlavaHf => format!("USER: {content} ASSISTANT:"),
        })
    }
}

impl FromStr for PromptTemplate {
    type Err = TokenizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "vicuna_v1" | "llava_v1" => Ok(Self::VicunaV1),
            "llava_hf" => Ok(Self::LlavaHf),
            _ => Err(TokenizeError::UnknownTemplate(s.to_string())),
        }
    }
}

/// How the image appears in `input_ids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageToken {
    /// Original LLaVA: a negative placeholder id (`IMAGE_TOKEN_INDEX = -200`) via `tokenizer_image_token`.
    Placeholder(i64),
    /// llava-hf: `"<image>"` is a special token of `tokenizer.json` with this id.
    Special(u32),
}

impl ImageToken {
    /// Original LLaVA's placeholder, -200.
    pub const LLAVA: Self = Self::Placeholder(IMAGE_TOKEN_INDEX);

    /// The id that marks an image in `input_ids`.
    pub fn id(&self) -> i64 {
        match *self {
            Self::Placeholder(id) => id,
            Self::Special(id) => i64::from(id),
        }
    }
}

/// A `tokenizer.json` tokenizer that knows LLaVA's image token and the stop token.
#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    image_token: ImageToken,
    bos_id: Option<u32>,
    eos_id: u32,
}

/// Reads `bos_token`/`eos_token` from `tokenizer_config.json` or `special_tokens_map.json` next to the
/// tokenizer; each is a string or `{"content": ...}`.
fn special_token_names(dir: &Path) -> (Option<String>, Option<String>) {
    let name = |v: &serde_json::Value| {
        v.as_str().map(str::to_string).or_else(|| v.get("content").and_then(|c| c.as_str()).map(str::to_string))
    };
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let json = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(json) = json {
            let (bos, eos) = (json.get("bos_token").and_then(name), json.get("eos_token").and_then(name));
            if bos.is_some() || eos.is_some() {
                return (bos, eos);
            }
        }
    }
    (None, None)
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`, given as the file or its directory. BOS and EOS come from
    /// `tokenizer_config.json` / `special_tokens_map.json` beside it, else `<s>` and `</s>`.
    pub fn from_file(path: impl AsRef<Path>, image_token: ImageToken) -> Result<Self, TokenizeError> {
        let path = path.as_ref();
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let is_sentencepiece = file.extension().is_some_and(|e| e == "model");
        if is_sentencepiece || (!file.is_file() && dir.join("tokenizer.model").is_file()) {
            return Err(TokenizeError::SentencePieceOnly { dir });
        }
        if !file.is_file() {
            return Err(TokenizeError::NotFound { path: file });
        }
        let tokenizer = Tokenizer::from_file(&file).map_err(|source| TokenizeError::Load { path: file, source })?;
        let (bos, eos) = special_token_names(&dir);
        let eos = eos.unwrap_or_else(|| "</s>".to_string());
        let eos_id = tokenizer.token_to_id(&eos).ok_or(TokenizeError::NoEos { token: eos })?;
        let bos_id = tokenizer.token_to_id(bos.as_deref().unwrap_or("<s>"));
        Self::new(tokenizer, image_token, bos_id, eos_id)
    }

    /// Wraps a loaded tokenizer; checks that the image token exists (Special) or is negative (Placeholder).
    pub fn new(
        tokenizer: Tokenizer,
        image_token: ImageToken,
        bos_id: Option<u32>,
        eos_id: u32,
    ) -> Result<Self, TokenizeError> {
        match image_token {
            ImageToken::Placeholder(id) if id >= 0 => return Err(TokenizeError::BadPlaceholder(id)),
            ImageToken::Special(id) => {
                let found = tokenizer.token_to_id(IMAGE_MARKER);
                let special = tokenizer.get_added_tokens_decoder().get(&id).is_some_and(|t| t.special);
                if found != Some(id) || !special {
                    return Err(TokenizeError::NoImageToken { id, found });
                }
            }
            ImageToken::Placeholder(_) => {}
        }
        Ok(Self { tokenizer, image_token, bos_id, eos_id })
    }

    /// Tokenizes a prompt holding one or more `"<image>"`, with BOS, as LLaVA does.
    /// Returns `input_ids [L]`, the image marked by [`ImageToken::id`].
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>, TokenizeError> {
        if prompt.is_empty() {
            return Err(TokenizeError::EmptyPrompt);
        }
        let n_images = prompt.matches(IMAGE_MARKER).count();
        if n_images == 0 {
            return Err(TokenizeError::NoImage);
        }
        match self.image_token {
            ImageToken::Placeholder(id) => self.tokenizer_image_token(prompt, id),
            ImageToken::Special(id) => {
                let ids = self.encode_text(prompt)?;
                let found = ids.iter().filter(|&&t| t == i64::from(id)).count();
                if found != n_images {
                    return Err(TokenizeError::ImageNotSpecial { expected: n_images, found });
                }
                Ok(ids)
            }
        }
    }

    /// Port of `llava/mm_utils.py::tokenizer_image_token`.
    fn tokenizer_image_token(&self, prompt: &str, placeholder: i64) -> Result<Vec<i64>, TokenizeError> {
        let chunks = prompt.split(IMAGE_MARKER).map(|c| self.encode_text(c)).collect::<Result<Vec<_>, _>>()?;
        let bos = self.bos_id.map(i64::from);
        let offset = usize::from(chunks.first().and_then(|c| c.first()).is_some_and(|&t| Some(t) == bos));
        let mut ids = Vec::with_capacity(chunks.iter().map(Vec::len).sum::<usize>() + chunks.len());
        if offset == 1 {
            ids.push(chunks[0][0]); // BOS
        }
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                ids.push(placeholder); // `[image_token_index] * (offset + 1)`, sliced `[offset:]`
            }
            // LLaVA drops `offset` leading ids of every chunk: the BOS that each one got.
            ids.extend_from_slice(chunk.get(offset..).unwrap_or(&[]));
        }
        Ok(ids)
    }

    /// Plain tokenization with special tokens (BOS), as `tokenizer(text).input_ids`.
    pub fn encode_text(&self, text: &str) -> Result<Vec<i64>, TokenizeError> {
        let enc = self.tokenizer.encode(text, true).map_err(TokenizeError::Encode)?;
        Ok(enc.get_ids().iter().map(|&t| i64::from(t)).collect())
    }

    /// Decodes ids without special tokens (BOS, EOS); each image id becomes `"<image>"` again.
    pub fn decode(&self, ids: &[i64]) -> Result<String, TokenizeError> {
        let image = self.image_token.id();
        let vocab = self.tokenizer.get_vocab_size(true);
        let mut parts = Vec::new();
        for segment in ids.split(|&t| t == image) {
            let segment = segment
                .iter()
                .map(|&id| {
                    u32::try_from(id).ok().filter(|&t| (t as usize) < vocab).ok_or(TokenizeError::BadId { id, vocab })
                })
                .collect::<Result<Vec<u32>, _>>()?;
            parts.push(self.tokenizer.decode(&segment, true).map_err(TokenizeError::Decode)?);
        }
        Ok(parts.join(IMAGE_MARKER))
    }

    /// Positions of the image ids in `input_ids`.
    pub fn image_positions(&self, ids: &[i64]) -> Vec<usize> {
        let image = self.image_token.id();
        ids.iter().enumerate().filter(|(_, &t)| t == image).map(|(i, _)| i).collect()
    }

    /// The end-of-sequence id (`</s>` for LLaVA-1.5): generation stops here.
    pub fn eos_token_id(&self) -> u32 {
        self.eos_id
    }

    /// The beginning-of-sequence id (`<s>`), if the tokenizer has one.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The ids that end generation (today just EOS).
    pub fn stop_token_ids(&self) -> Vec<u32> {
        vec![self.eos_id]
    }

    /// How images appear in `input_ids`.
    pub fn image_token(&self) -> ImageToken {
        self.image_token
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The underlying `tokenizers` tokenizer (e.g. for streaming decoding).
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::{Dtype, SafeTensors};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
    }

    fn tokenizer(image_token: ImageToken) -> PromptTokenizer {
        PromptTokenizer::from_file(fixtures().join("model/llava-orig/tokenizer.json"), image_token).unwrap()
    }

    struct Case {
        name: String,
        prompt: String,
        question: String,
        pre_prompt: String,
        v_start: usize,
        ids_orig: Vec<i64>,
        roundtrip_ok: bool,
        ids_hf: Vec<i64>,
    }

    fn cases() -> Vec<Case> {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(fixtures().join("public")).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        assert!(!dirs.is_empty());
        dirs.iter()
            .map(|dir| {
                let json: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
                let text = |k: &str| json[k].as_str().unwrap().to_string();
                let bytes = std::fs::read(dir.join("inputs.safetensors")).unwrap();
                let st = SafeTensors::deserialize(&bytes).unwrap();
                let hf = st.tensor("input_ids_hf").unwrap();
                assert_eq!(hf.dtype(), Dtype::I64);
                Case {
                    name: text("case"),
                    prompt: text("prompt"),
                    question: text("question"),
                    pre_prompt: text("pre_prompt"),
                    v_start: json["v_start"].as_u64().unwrap() as usize,
                    ids_orig: json["input_ids_orig"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect(),
                    roundtrip_ok: json["tokenizer_roundtrip_ok"].as_bool().unwrap(),
                    ids_hf: hf
                        .data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                        .collect(),
                }
            })
            .collect()
    }

    #[test]
    fn original_llava_ids_match_golden() {
        let tok = tokenizer(ImageToken::LLAVA);
        for case in cases() {
            assert!(case.roundtrip_ok, "{}: the fixture says tokenizer.json does not reproduce it", case.name);
            let ids = tok.encode(&case.prompt).unwrap();
            assert_eq!(ids, case.ids_orig, "{}", case.name);
            assert_eq!(tok.image_positions(&ids), vec![case.v_start], "{}", case.name);
        }
    }

    #[test]
    fn llava_hf_ids_match_golden() {
        let tok = tokenizer(ImageToken::Special(999));
        for case in cases() {
            assert_eq!(tok.encode(&case.prompt).unwrap(), case.ids_hf, "{}", case.name);
        }
    }

    #[test]
    fn decode_inverts_encode() {
        for image_token in [ImageToken::LLAVA, ImageToken::Special(999)] {
            let tok = tokenizer(image_token);
            for case in cases() {
                let ids = tok.encode(&case.prompt).unwrap();
                assert_eq!(tok.decode(&ids).unwrap(), case.prompt, "{} {image_token:?}", case.name);
            }
        }
    }

    #[test]
    fn templates_rebuild_the_golden_prompts() {
        let mut n_vicuna = 0;
        for case in cases() {
            if case.pre_prompt.starts_with(VICUNA_V1_SYSTEM) {
                assert_eq!(PromptTemplate::VicunaV1.render(&case.question).unwrap(), case.prompt, "{}", case.name);
                n_vicuna += 1;
            }
        }
        assert!(n_vicuna >= 3, "{n_vicuna} vicuna_v1 cases");
        assert_eq!(PromptTemplate::LlavaHf.render("Why?").unwrap(), "USER: <image>\nWhy? ASSISTANT:");
        assert_eq!(PromptTemplate::LlavaHf.render("<image> then why?").unwrap(), "USER: <image> then why? ASSISTANT:");
        assert_eq!("llava-hf".parse::<PromptTemplate>().unwrap(), PromptTemplate::LlavaHf);
        assert_eq!("vicuna_v1".parse::<PromptTemplate>().unwrap(), PromptTemplate::VicunaV1);
        assert!("chatml".parse::<PromptTemplate>().is_err());
        assert!(matches!(PromptTemplate::VicunaV1.render("  "), Err(TokenizeError::EmptyQuestion)));
    }

    #[test]
    fn special_tokens_and_several_images() {
        let tok = tokenizer(ImageToken::LLAVA);
        assert_eq!((tok.bos_token_id(), tok.eos_token_id(), tok.stop_token_ids()), (Some(1), 2, vec![2]));
        let ids = tok.encode("<image>\nA <image>\nB").unwrap();
        assert_eq!(ids[..2], [1, -200]);
        assert_eq!(tok.image_positions(&ids).len(), 2);
        let hf = tokenizer(ImageToken::Special(999));
        assert_eq!(hf.image_positions(&hf.encode("<image>\nA <image>\nB").unwrap()).len(), 2);
        assert_eq!(tok.decode(&[1, 2]).unwrap(), "");
    }

    #[test]
    fn bad_prompts_and_ids_are_errors() {
        let tok = tokenizer(ImageToken::LLAVA);
        assert!(matches!(tok.encode(""), Err(TokenizeError::EmptyPrompt)));
        assert!(matches!(tok.encode("USER: hello ASSISTANT:"), Err(TokenizeError::NoImage)));
        assert!(matches!(tok.decode(&[1, -7]), Err(TokenizeError::BadId { id: -7, .. })));
        assert!(matches!(tok.decode(&[1, 1000]), Err(TokenizeError::BadId { id: 1000, .. })));
    }

    #[test]
    fn bad_tokenizer_setups_are_errors() {
        let json = fixtures().join("model/llava-orig/tokenizer.json");
        let wrong_id = PromptTokenizer::from_file(&json, ImageToken::Special(5));
        assert!(matches!(wrong_id, Err(TokenizeError::NoImageToken { id: 5, found: Some(999) })));
        let positive = PromptTokenizer::from_file(&json, ImageToken::Placeholder(7));
        assert!(matches!(positive, Err(TokenizeError::BadPlaceholder(7))));
        let missing = PromptTokenizer::from_file("/nonexistent/tokenizer.json", ImageToken::LLAVA);
        assert!(matches!(missing, Err(TokenizeError::NotFound { .. })));
        // A directory with only a sentencepiece model.
        let dir = std::env::temp_dir().join(format!("sparsevlm-spm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokenizer.model"), b"spm").unwrap();
        let spm = PromptTokenizer::from_file(&dir, ImageToken::LLAVA);
        std::fs::remove_dir_all(&dir).unwrap();
        let msg = spm.unwrap_err().to_string();
        assert!(msg.contains("tokenizer.json is required") && msg.contains("save_pretrained"), "{msg}");
        // A directory whose tokenizer.json is corrupt.
        let dir = std::env::temp_dir().join(format!("sparsevlm-badjson-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokenizer.json"), b"{ not json").unwrap();
        let bad = PromptTokenizer::from_file(&dir, ImageToken::LLAVA);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(bad, Err(TokenizeError::Load { .. })));
    }
}
