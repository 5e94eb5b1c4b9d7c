//! The evaluation harness on a generated tiny model and a tiny easy-VQA-format set: every method at
//! every budget is scored, budgets at the visual token count share the dense answers, and the table and
//! chart are produced.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device};
use sparsevlm_candle::config::Layout;
use sparsevlm_candle::data::read_easy_vqa;
use sparsevlm_candle::eval::{evaluate, markdown, plot, point_config, Journal, LlavaPrompter, LLAVA_SHORT_ANSWER};
use sparsevlm_candle::models::llava::{Llava, LoadOptions};
use sparsevlm_candle::plan::plan;
use sparsevlm_candle::preprocess::PreprocessConfig;
use sparsevlm_candle::tiny::{write_tiny_llava, TinySpec};
use sparsevlm_candle::tokenize::{ImageToken, PromptTemplate, PromptTokenizer};
use sparsevlm_core::{MethodName, MethodSpec};

#[test]
fn every_method_and_budget_is_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("model");
    write_tiny_llava(&model_dir, Layout::LlavaHf, &TinySpec { layers: 24, ..TinySpec::default() }, 1).unwrap();
    let options = LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false };
    let model = Llava::load(&model_dir, &options).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    for (i, colour) in [[255u8, 0, 0], [0, 0, 255]].iter().enumerate() {
        image::RgbImage::from_pixel(64, 64, image::Rgb(*colour)).save(data.join(format!("images/{i}.png"))).unwrap();
    }
    std::fs::write(data.join("questions.json"), r#"[["what color is the shape ?", "red", 0], ["what color is the shape ?", "blue", 1], ["is there a circle ?", "no", 1]]"#).unwrap();
    let items = read_easy_vqa(&data).unwrap();
    let tokenizer =
        PromptTokenizer::from_file(&model_dir, ImageToken::Special(model.config.image_token as u32)).unwrap();
    let prompter =
        LlavaPrompter { tokenizer, template: PromptTemplate::LlavaHf, instruction: Some(LLAVA_SHORT_ANSWER) };
    let methods = MethodName::COMPARED.map(MethodSpec::new);
    let budgets = [576, 64, 16];
    let path = tmp.path().join("eval.jsonl");
    let mut journal = Journal::open(&path).unwrap();
    let pre = PreprocessConfig::default();
    let points = evaluate(&model, &prompter, &pre, &items, &methods, &budgets, Some(&mut journal), false).unwrap();
    assert_eq!(points.len(), methods.len() * 3);
    assert!(points.iter().all(|p| p.total == 3));
    let dense: Vec<f64> = points.iter().filter(|p| p.budget == 576).map(|p| p.accuracy).collect();
    assert!(dense.windows(2).all(|w| w[0] == w[1]), "budget 576 is dense for every method");
    // Each point runs the budget rule's configuration: the official tables at 64 for SparseVLM and random
    // (equivalent tokens as planned for this depth), solved to the budget elsewhere.
    let dims = model.config.text.dims();
    for p in points.iter().filter(|p| p.budget < 576) {
        let spec = methods.iter().find(|m| m.family() == p.method).unwrap();
        let planned = plan(&point_config(spec, p.budget).unwrap(), &dims, 576, 10).unwrap().pruned.equivalent_tokens;
        assert!(
            (p.equivalent_tokens - planned).abs() < 1e-9,
            "{} at {}: {} planned {planned}",
            p.method,
            p.budget,
            p.equivalent_tokens
        );
        let table = p.budget == 64 && ["SparseVLM v1.5", "SparseVLM v2.0", "random"].contains(&p.method.as_str());
        if !table {
            assert!(
                (p.equivalent_tokens - p.budget as f64).abs() <= 1.5,
                "{} at {}: {}",
                p.method,
                p.budget,
                p.equivalent_tokens
            );
        }
    }
    let table = markdown(&points);
    assert!(table.contains("| SparseVLM v1.5 |") && table.contains("| 576 | 64 | 16 |"), "{table}");
    assert_eq!(plot("tiny", &points).dimensions(), (960, 600));

    // A resumed run reads finished questions back from the journal: flip one stored verdict and see it.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    let mut first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let verdict = first["results"][0]["correct"].as_bool().unwrap();
    first["results"][0]["correct"] = serde_json::Value::Bool(!verdict);
    let rest: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&path, format!("{first}\n{}\n", rest.join("\n"))).unwrap();
    let mut journal = Journal::open(&path).unwrap();
    let again = evaluate(&model, &prompter, &pre, &items, &methods, &budgets, Some(&mut journal), false).unwrap();
    let first_point = |ps: &[sparsevlm_candle::eval::EvalPoint]| {
        ps.iter().find(|p| p.budget == 576 && p.method == methods[0].family()).unwrap().correct as i64
    };
    let (before, flipped) = (first_point(&points), first_point(&again));
    assert_eq!(flipped - before, if verdict { -1 } else { 1 });
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3, "nothing was recomputed");
}
