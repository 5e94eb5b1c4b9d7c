//! Visual question answering data in the easy-VQA layout (Zhou, `easy-VQA`, MIT): a folder with
//! `questions.json` (a list of `[question, answer, image_id]`) and `images/{image_id}.png`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One question about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaItem {
    pub question: String,
    pub answer: String,
    pub image: PathBuf,
}

/// Reads `dir/questions.json` and checks that every image exists.
pub fn read_easy_vqa(dir: &Path) -> Result<Vec<VqaItem>> {
    let path = dir.join("questions.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let rows: Vec<(String, String, serde_json::Value)> = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: not an easy-VQA question list: {e}", path.display())))?;
    let mut items = Vec::with_capacity(rows.len());
    for (question, answer, id) in rows {
        let id = match id {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s,
            other => return Err(Error::Input(format!("{}: bad image id {other}", path.display()))),
        };
        let image = dir.join("images").join(format!("{id}.png"));
        if !image.exists() {
            return Err(Error::Input(format!("{}: image {} is missing", path.display(), image.display())));
        }
        items.push(VqaItem { question, answer, image });
    }
    if items.is_empty() {
        return Err(Error::Input(format!("{}: no questions", path.display())));
    }
    Ok(items)
}

/// A model answer reduced for exact-match scoring: lower case, first word, no punctuation.
pub fn normalize_answer(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("").trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_normalised() {
        assert_eq!(normalize_answer(" Circle."), "circle");
        assert_eq!(normalize_answer("Yes, it is"), "yes");
        assert_eq!(normalize_answer(""), "");
    }

    #[test]
    fn reads_a_small_dataset_and_rejects_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        image::RgbImage::new(4, 4).save(dir.path().join("images/0.png")).unwrap();
        std::fs::write(dir.path().join("questions.json"), r#"[["what shape?", "circle", 0]]"#).unwrap();
        let items = read_easy_vqa(dir.path()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].answer, "circle");
        std::fs::write(dir.path().join("questions.json"), r#"[["what shape?", "circle", 7]]"#).unwrap();
        assert!(read_easy_vqa(dir.path()).unwrap_err().to_string().contains("missing"));
        std::fs::write(dir.path().join("questions.json"), "{}").unwrap();
        assert!(read_easy_vqa(dir.path()).is_err());
    }
}
