//! The one method language of every front end (the CLI's `--method`, `plan`, `eval`, `bench`, the web
//! `Session` and the server): a [`MethodSpec`] is a method name, an optional budget and options, written
//!
//! ```text
//! NAME[@BUDGET][:OPTION]...        v1.5@64   sparsevlm-v2@96:exact   fastv:k=3:ratio=0.5   random@64:seed=7
//! ```
//!
//! **The budget rule** (docs/methods.md): a budget with an official table (192, 128, 96 or 64 on a
//! 576-token image at the official layers) uses that table, like the official code; any other budget is
//! solved for that equivalent token count; the `exact` option always solves. A budget equal to the number
//! of visual tokens prunes nothing. FastV and PyramidDrop have no tables: their budgets are always solved.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::method::{BaselineKeep, Budget, Method, SparseConfig};

/// The budget of a method that takes one and was given none.
pub const DEFAULT_BUDGET: u32 = 192;

/// The method families, by canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodName {
    Dense,
    SparseVlmV1,
    SparseVlmV15,
    SparseVlmV2,
    SparseVlmVideo,
    FastV,
    PDrop,
    Random,
}

impl MethodName {
    /// Every method, in the order of tables.
    pub const ALL: [MethodName; 8] = [
        MethodName::Dense,
        MethodName::SparseVlmV1,
        MethodName::SparseVlmV15,
        MethodName::SparseVlmV2,
        MethodName::SparseVlmVideo,
        MethodName::FastV,
        MethodName::PDrop,
        MethodName::Random,
    ];

    /// The methods compared at one budget (the evaluation's and the demo's selection).
    pub const COMPARED: [MethodName; 5] =
        [MethodName::SparseVlmV15, MethodName::SparseVlmV2, MethodName::FastV, MethodName::PDrop, MethodName::Random];

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            MethodName::Dense => "dense",
            MethodName::SparseVlmV1 => "sparsevlm-v1",
            MethodName::SparseVlmV15 => "sparsevlm-v1.5",
            MethodName::SparseVlmV2 => "sparsevlm-v2",
            MethodName::SparseVlmVideo => "sparsevlm-video",
            MethodName::FastV => "fastv",
            MethodName::PDrop => "pdrop",
            MethodName::Random => "random",
        }
    }

    /// The name shown in tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            MethodName::Dense => "dense",
            MethodName::SparseVlmV1 => "SparseVLM v1",
            MethodName::SparseVlmV15 => "SparseVLM v1.5",
            MethodName::SparseVlmV2 => "SparseVLM v2.0",
            MethodName::SparseVlmVideo => "SparseVLM video",
            MethodName::FastV => "FastV",
            MethodName::PDrop => "PDrop",
            MethodName::Random => "random",
        }
    }

    /// Reads a canonical name or an alias (`v1.5`, `v2.0`, `sparsevlm+`, `pyramiddrop`, ...),
    /// case-insensitively; the `sparsevlm-` prefix is optional.
    pub fn parse(name: &str) -> Option<MethodName> {
        let name = name.trim().to_ascii_lowercase();
        let short = name.strip_prefix("sparsevlm-").unwrap_or(&name);
        Some(match short {
            "dense" | "none" => MethodName::Dense,
            "v1" | "v1.0" => MethodName::SparseVlmV1,
            "v1.5" | "v15" | "sparsevlm" => MethodName::SparseVlmV15,
            "v2" | "v2.0" | "v20" | "sparsevlm+" | "plus" => MethodName::SparseVlmV2,
            "video" => MethodName::SparseVlmVideo,
            "fastv" => MethodName::FastV,
            "pdrop" | "pyramiddrop" => MethodName::PDrop,
            "random" => MethodName::Random,
            _ => return None,
        })
    }

    /// Whether the method's size is set by a retained-token budget.
    pub fn takes_budget(self) -> bool {
        !matches!(self, MethodName::Dense | MethodName::SparseVlmV1 | MethodName::SparseVlmVideo)
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A method, its budget and its options: what a user asks for.
///
/// `Display` writes the canonical form, which parses back to the same spec; serde reads and writes that
/// string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MethodSpec {
    pub name: MethodName,
    /// Retained (equivalent) visual tokens; `None` means [`DEFAULT_BUDGET`] for methods that take one.
    pub budget: Option<u32>,
    /// Solve for the budget even where an official table exists.
    pub exact: bool,
    /// SparseVLM v2.0: priority heads (default: the official 14 of 32, scaled to the model).
    pub heads: Option<usize>,
    /// SparseVLM v1: keep `int(scale·rank + bias)` (official 13.5 and 0).
    pub scale: Option<f32>,
    pub bias: Option<f32>,
    /// FastV: prune after layer `k − 1` (official 2).
    pub k: Option<usize>,
    /// FastV: the fraction of visual tokens pruned; PyramidDrop: λ, the fraction kept at each stage.
    /// Replaces the budget.
    pub ratio: Option<f32>,
    /// PyramidDrop: the stage layers (default: the decoder's quarters).
    pub layers: Option<Vec<usize>>,
    /// Random: the seed (default 0).
    pub seed: Option<u64>,
    /// Reproduce the official code's edge cases and its unguarded gravity divisor.
    pub quirks: bool,
}

impl MethodSpec {
    /// A method with no budget and no options.
    pub fn new(name: MethodName) -> Self {
        MethodSpec {
            name,
            budget: None,
            exact: false,
            heads: None,
            scale: None,
            bias: None,
            k: None,
            ratio: None,
            layers: None,
            seed: None,
            quirks: false,
        }
    }

    /// The same method at `budget` retained tokens (a no-op for methods without a budget).
    pub fn at(&self, budget: u32) -> Self {
        let mut spec = self.clone();
        if spec.name.takes_budget() {
            spec.budget = Some(budget);
            spec.ratio = None;
        }
        spec
    }

    /// The budget the method runs at, when its size is set by one.
    pub fn effective_budget(&self) -> Option<u32> {
        (self.name.takes_budget() && self.ratio.is_none()).then(|| self.budget.unwrap_or(DEFAULT_BUDGET))
    }

    /// A short name for tables: the label and the budget (`SparseVLM v1.5 at 64`).
    pub fn label(&self) -> String {
        match self.effective_budget() {
            Some(b) => format!("{} at {b}", self.name.label()),
            None => self.to_string(),
        }
    }

    /// The method with its options but not its budget, for the rows of a table (`SparseVLM v1.5`,
    /// `fastv:k=3`).
    pub fn family(&self) -> String {
        let mut bare = self.clone();
        bare.budget = None;
        match bare == MethodSpec::new(self.name) {
            true => self.name.label().to_string(),
            false => bare.to_string(),
        }
    }

    /// Every spec at every budget, in that order; a spec with a budget or ratio of its own, and a method
    /// that takes no budget, appears once.
    pub fn grid(specs: &[MethodSpec], budgets: &[u32]) -> Vec<MethodSpec> {
        specs
            .iter()
            .flat_map(|spec| match spec.name.takes_budget() && spec.budget.is_none() && spec.ratio.is_none() {
                true => budgets.iter().map(|&b| spec.at(b)).collect(),
                false => vec![spec.clone()],
            })
            .collect()
    }

    /// The configuration the algorithm runs (budgets are checked against the image later, by the recipe).
    pub fn config(&self) -> crate::Result<SparseConfig> {
        self.check()?;
        let tokens = self.budget.unwrap_or(DEFAULT_BUDGET);
        let budget = if self.exact { Budget::Solve(tokens) } else { Budget::Tokens(tokens) };
        let method = match self.name {
            MethodName::Dense => Method::Dense,
            MethodName::SparseVlmV1 => {
                Method::SparseVlmV1 { scale: self.scale.unwrap_or(13.5), bias: self.bias.unwrap_or(0.0) }
            }
            MethodName::SparseVlmV15 => Method::SparseVlmV15 { budget },
            MethodName::SparseVlmV2 => Method::SparseVlmV20 { budget, priority_heads: self.heads },
            MethodName::SparseVlmVideo => Method::SparseVlmVideo,
            MethodName::FastV => {
                let keep = match self.ratio {
                    Some(r) => BaselineKeep::Ratio(1.0 - r),
                    None => BaselineKeep::Budget(tokens),
                };
                Method::FastV { k: self.k.unwrap_or(2), keep }
            }
            MethodName::PDrop => {
                let keep = match self.ratio {
                    Some(r) => BaselineKeep::Ratio(r),
                    None => BaselineKeep::Budget(tokens),
                };
                Method::PDrop { layers: self.layers.clone(), keep }
            }
            MethodName::Random => Method::Random { budget, seed: self.seed.unwrap_or(0) },
        };
        let config = SparseConfig { method, ..SparseConfig::default() };
        Ok(if self.quirks { config.official_quirks() } else { config })
    }

    /// Options that do not belong to the method, and values out of range, are errors.
    fn check(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::SparseError::InvalidConfig(format!("`{self}`: {what}")));
        let n = self.name;
        let allowed = |option: &str| match option {
            "budget" | "exact" => n.takes_budget(),
            "heads" => n == MethodName::SparseVlmV2,
            "scale" | "bias" => n == MethodName::SparseVlmV1,
            "k" => n == MethodName::FastV,
            "ratio" => matches!(n, MethodName::FastV | MethodName::PDrop),
            "layers" => n == MethodName::PDrop,
            "seed" => n == MethodName::Random,
            _ => true,
        };
        let given = [
            ("budget", self.budget.is_some()),
            ("exact", self.exact),
            ("heads", self.heads.is_some()),
            ("scale", self.scale.is_some()),
            ("bias", self.bias.is_some()),
            ("k", self.k.is_some()),
            ("ratio", self.ratio.is_some()),
            ("layers", self.layers.is_some()),
            ("seed", self.seed.is_some()),
        ];
        if let Some((option, _)) = given.iter().find(|(option, set)| *set && !allowed(option)) {
            return bad(&format!("{} takes no `{option}`", n.name()));
        }
        if self.budget == Some(0) {
            return bad("budget 0 is out of range: it must be at least 1");
        }
        if self.ratio.is_some() && self.budget.is_some() {
            return bad("give a budget or a ratio, not both");
        }
        if let Some(r) = self.ratio {
            let ok = match n {
                MethodName::FastV => (0.0..1.0).contains(&r),
                _ => r > 0.0 && r <= 1.0,
            };
            if !ok {
                return bad(&format!(
                    "ratio {r} is out of range ({})",
                    if n == MethodName::FastV { "[0, 1)" } else { "(0, 1]" }
                ));
            }
        }
        if self.heads == Some(0) {
            return bad("heads must be at least 1");
        }
        if self.scale.is_some_and(|s| !s.is_finite()) || self.bias.is_some_and(|b| !b.is_finite()) {
            return bad("scale and bias must be finite");
        }
        if self.k == Some(0) {
            return bad("FastV's k must be at least 1");
        }
        Ok(())
    }
}

impl fmt::Display for MethodSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.name())?;
        if let Some(b) = self.budget {
            write!(f, "@{b}")?;
        }
        if self.exact {
            f.write_str(":exact")?;
        }
        if let Some(h) = self.heads {
            write!(f, ":heads={h}")?;
        }
        if let Some(s) = self.scale {
            write!(f, ":scale={s}")?;
        }
        if let Some(b) = self.bias {
            write!(f, ":bias={b}")?;
        }
        if let Some(k) = self.k {
            write!(f, ":k={k}")?;
        }
        if let Some(r) = self.ratio {
            write!(f, ":ratio={r}")?;
        }
        if let Some(layers) = &self.layers {
            let layers: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
            write!(f, ":layers={}", layers.join("/"))?;
        }
        if let Some(s) = self.seed {
            write!(f, ":seed={s}")?;
        }
        if self.quirks {
            f.write_str(":quirks")?;
        }
        Ok(())
    }
}

/// Why a method spec does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("method `{spec}`: {reason} (write NAME[@BUDGET][:OPTION]..., e.g. v1.5@64, fastv:k=3:ratio=0.5; names: dense, sparsevlm-v1, sparsevlm-v1.5, sparsevlm-v2, sparsevlm-video, fastv, pdrop, random)")]
pub struct SpecError {
    pub spec: String,
    pub reason: String,
}

impl FromStr for MethodSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let fail = |reason: String| SpecError { spec: text.to_string(), reason };
        let mut parts = text.trim().split(':');
        let head = parts.next().unwrap_or_default();
        let (name, budget) = match head.split_once('@') {
            Some((name, budget)) => (name, Some(budget)),
            None => (head, None),
        };
        let name = MethodName::parse(name).ok_or_else(|| fail(format!("unknown method name `{name}`")))?;
        let mut spec = MethodSpec::new(name);
        if let Some(b) = budget {
            spec.budget = Some(b.trim().parse().map_err(|_| fail(format!("budget `{b}` is not a whole number")))?);
        }
        for option in parts {
            let (key, value) = match option.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (option.trim().to_ascii_lowercase(), None),
            };
            let value = |what: &str| value.ok_or_else(|| fail(format!("option `{key}` needs a value ({what})")));
            let number = |v: &str| v.parse::<f64>().map_err(|_| fail(format!("`{key}={v}` is not a number")));
            let whole = |v: &str| v.parse::<u64>().map_err(|_| fail(format!("`{key}={v}` is not a whole number")));
            match key.as_str() {
                "exact" => spec.exact = true,
                "quirks" => spec.quirks = true,
                "heads" => spec.heads = Some(whole(value("a count")?)? as usize),
                "scale" => spec.scale = Some(number(value("a number")?)? as f32),
                "bias" => spec.bias = Some(number(value("a number")?)? as f32),
                "k" => spec.k = Some(whole(value("a layer")?)? as usize),
                "ratio" | "lambda" => spec.ratio = Some(number(value("a fraction")?)? as f32),
                "seed" => spec.seed = Some(whole(value("a whole number")?)?),
                "layers" => {
                    let layers = value("layers separated by /")?
                        .split('/')
                        .map(|l| whole(l.trim()).map(|l| l as usize))
                        .collect::<Result<Vec<_>, _>>()?;
                    spec.layers = Some(layers);
                }
                "" => return Err(fail("an empty option".into())),
                other => return Err(fail(format!("unknown option `{other}`"))),
            }
        }
        spec.check().map_err(|e| fail(e.to_string()))?;
        Ok(spec)
    }
}

impl TryFrom<String> for MethodSpec {
    type Error = SpecError;

    fn try_from(text: String) -> Result<Self, SpecError> {
        text.parse()
    }
}

impl From<MethodSpec> for String {
    fn from(spec: MethodSpec) -> String {
        spec.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> MethodSpec {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn names_and_aliases_parse_to_one_method() {
        for (text, name) in [
            ("dense", MethodName::Dense),
            ("v1", MethodName::SparseVlmV1),
            ("SparseVLM-v1.5", MethodName::SparseVlmV15),
            ("v1.5", MethodName::SparseVlmV15),
            ("v2.0", MethodName::SparseVlmV2),
            ("sparsevlm-v2", MethodName::SparseVlmV2),
            ("video", MethodName::SparseVlmVideo),
            ("FastV", MethodName::FastV),
            ("pyramiddrop", MethodName::PDrop),
            ("random", MethodName::Random),
        ] {
            assert_eq!(spec(text).name, name, "{text}");
        }
        for name in MethodName::ALL {
            assert_eq!(MethodName::parse(name.name()), Some(name));
        }
    }

    #[test]
    fn the_budget_rule_tables_unless_exact() {
        let table = spec("v1.5@64").config().unwrap();
        assert_eq!(table.method, Method::SparseVlmV15 { budget: Budget::Tokens(64) });
        let solved = spec("v1.5@64:exact").config().unwrap();
        assert_eq!(solved.method, Method::SparseVlmV15 { budget: Budget::Solve(64) });
        assert_eq!(spec("v2").config().unwrap(), SparseConfig::v20(DEFAULT_BUDGET));
        assert_eq!(spec("random@64:seed=5").config().unwrap(), SparseConfig::random(64, 5));
        assert_eq!(spec("fastv:k=3:ratio=0.75").config().unwrap(), SparseConfig::fastv(3, 0.75));
        assert_eq!(spec("pdrop:ratio=0.5").config().unwrap(), SparseConfig::pdrop());
        assert_eq!(spec("fastv@96").config().unwrap().method, Method::FastV { k: 2, keep: BaselineKeep::Budget(96) });
        assert_eq!(spec("v1:scale=0.8:bias=6:quirks").config().unwrap(), SparseConfig::v1(0.8, 6.0).official_quirks());
        assert_eq!(
            spec("v2@128:heads=7").config().unwrap().method,
            Method::SparseVlmV20 { budget: Budget::Tokens(128), priority_heads: Some(7) }
        );
    }

    #[test]
    fn canonical_text_and_json_round_trip() {
        for text in [
            "dense",
            "v1.5@64",
            "v2@96:exact:heads=3",
            "fastv:k=3:ratio=0.5",
            "pdrop@64:layers=8/16/24",
            "random@32:seed=9",
            "v1:scale=13.5:bias=-1",
            "video:quirks",
        ] {
            let s = spec(text);
            assert_eq!(spec(&s.to_string()), s, "{text}");
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<MethodSpec>(&json).unwrap(), s);
        }
        assert_eq!(spec("sparsevlm-v1.5@64").to_string(), "sparsevlm-v1.5@64");
        assert_eq!(spec("v1.5").at(96).to_string(), "sparsevlm-v1.5@96");
        assert_eq!(spec("dense").at(96).to_string(), "dense");
        assert_eq!(spec("fastv:ratio=0.5").at(64).to_string(), "fastv@64");
        assert_eq!(spec("v1.5@64").label(), "SparseVLM v1.5 at 64");
        assert_eq!(spec("v2").effective_budget(), Some(DEFAULT_BUDGET));
        assert_eq!(spec("v1.5@64").family(), "SparseVLM v1.5");
        assert_eq!(spec("fastv@64:k=3").family(), "fastv:k=3");
        let grid = MethodSpec::grid(&[spec("dense"), spec("v2"), spec("fastv:ratio=0.5"), spec("pdrop@10")], &[64, 32]);
        let grid: Vec<String> = grid.iter().map(|s| s.to_string()).collect();
        assert_eq!(grid, ["dense", "sparsevlm-v2@64", "sparsevlm-v2@32", "fastv:ratio=0.5", "pdrop@10"]);
    }

    #[test]
    fn bad_specs_are_errors() {
        for text in [
            "",
            "v3",
            "v1.5@",
            "v1.5@-4",
            "v1.5@0",
            "v1.5@6.5",
            "dense@64",
            "v1@64",
            "video:exact",
            "v1.5:k=3",
            "fastv:ratio=1",
            "fastv:ratio=x",
            "fastv@64:ratio=0.5",
            "pdrop:ratio=0",
            "v2:heads=0",
            "v1.5:fast",
            "v1.5:",
            "fastv:k=0",
            "fastv:k",
            "v1:scale=nan",
            "pdrop:layers=8/x",
            "random:seed=-1",
        ] {
            assert!(text.parse::<MethodSpec>().is_err(), "`{text}` parsed");
        }
        let e = "v1.5@0".parse::<MethodSpec>().unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        assert!(serde_json::from_str::<MethodSpec>("\"nope\"").is_err());
    }
}
