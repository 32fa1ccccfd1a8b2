//! `metric-loss stats | knn | retrieval | score`: the embedding's measurements on `.npy`
//! inputs. Each reads and validates everything, then opens the device (or runs the f64
//! reference with `--device cpu`), writes its outputs all or none and prints one JSON line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use metric_loss::measure::{roc_auc, Histograms, Knn, Neighbours, PairKind, PairStats, Retrieval};
use metric_loss::{Distance, Embeddings};
use serde_json::{json, Map, Value};

use crate::eval::{DeviceArg, DistanceArg};
use crate::io::{self, Matrix, Outputs};
use crate::{npy, plot, Failure};

/// Where the computation runs and under which distance.
#[derive(Args)]
pub(crate) struct Common {
    /// Distance between rows (default euclidean).
    #[arg(long, value_enum)]
    pub distance: Option<DistanceArg>,
    /// gpu (default) or cpu (the f64 reference).
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
}

impl Common {
    fn distance(&self) -> Distance {
        self.distance.unwrap_or(DistanceArg::Euclidean).into()
    }
}

/// A labelled set, and optionally a labelled reference set.
#[derive(Args)]
pub(crate) struct LabelledFlags {
    /// Embeddings (N×D .npy).
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Their integer labels (N .npy).
    #[arg(long)]
    pub labels: PathBuf,
    /// Reference rows (M×D .npy): the embeddings are measured against these instead of
    /// against each other.
    #[arg(long, requires = "reference_labels")]
    pub reference: Option<PathBuf>,
    /// The reference rows' integer labels (M .npy).
    #[arg(long, requires = "reference")]
    pub reference_labels: Option<PathBuf>,
}

/// Rows with labels, read and checked.
struct Set {
    x: Matrix,
    labels: Vec<i64>,
}

impl LabelledFlags {
    fn read(&self) -> Result<(Set, Option<Set>), Failure> {
        let x = io::matrix("embeddings", &self.embeddings)?;
        let labels = io::int_labels("labels", &self.labels, "the embeddings", x.rows)?;
        let reference = match (&self.reference, &self.reference_labels) {
            (Some(r), Some(rl)) => {
                let r = io::matrix("reference", r)?;
                dims("embeddings", &x, &r)?;
                let labels = io::int_labels("reference-labels", rl, "the reference", r.rows)?;
                Some(Set { x: r, labels })
            }
            _ => None,
        };
        Ok((Set { x, labels }, reference))
    }
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    pub set: LabelledFlags,
    /// Histogram bins (1 to 4096).
    #[arg(long, default_value_t = 100, allow_hyphen_values = true)]
    pub bins: i64,
    /// Upper edge of the bins (default: the largest pair distance, rounded up).
    #[arg(long)]
    pub range: Option<f32>,
    /// Contrastive positive margin whose active share to report.
    #[arg(long, default_value_t = 0.0)]
    pub pos_margin: f64,
    /// Contrastive (dissimilar) margin whose active share to report.
    #[arg(long, default_value_t = 1.0)]
    pub margin: f64,
    /// The share of pairs the suggested margins make active.
    #[arg(long, default_value_t = 0.1)]
    pub active_share: f64,
    /// The quantile q of the midpoint rule.
    #[arg(long, default_value_t = 0.9)]
    pub quantile: f64,
    /// Draw both histograms into this PNG, with --pos-margin (green), --margin (black) and
    /// the suggested margins (grey) marked.
    #[arg(long)]
    pub png: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// Query rows and the rows they are measured against.
#[derive(Args)]
pub(crate) struct QueryFlags {
    /// Query rows (N×D .npy).
    #[arg(long)]
    pub queries: PathBuf,
    /// Reference rows (M×D .npy); for `score`, the normal rows.
    #[arg(long)]
    pub reference: PathBuf,
}

impl QueryFlags {
    /// Both matrices, read and checked to have one dimension.
    fn read(&self) -> Result<(Matrix, Matrix), Failure> {
        let q = io::matrix("queries", &self.queries)?;
        let r = io::matrix("reference", &self.reference)?;
        dims("queries", &q, &r)?;
        Ok((q, r))
    }
}

#[derive(Args)]
pub(crate) struct KnnArgs {
    #[command(flatten)]
    pub rows: QueryFlags,
    /// Neighbours per query (1 to 1024).
    #[arg(short = 'k', allow_hyphen_values = true)]
    pub k: i64,
    /// The queries are the references (row i is reference i): leave each out of its own
    /// neighbours.
    #[arg(long)]
    pub exclude_self: bool,
    /// Write the neighbours' reference rows here (int64 N×K .npy), nearest first.
    #[arg(long)]
    pub indices: PathBuf,
    /// Write their distances here (float32 N×K .npy).
    #[arg(long)]
    pub distances: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub(crate) struct RetrievalArgs {
    #[command(flatten)]
    pub set: LabelledFlags,
    /// The k of recall@k (default 1).
    #[arg(short = 'k', default_value_t = 1, allow_hyphen_values = true)]
    pub k: i64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub(crate) struct ScoreArgs {
    #[command(flatten)]
    pub rows: QueryFlags,
    /// The score is the distance to the k-th nearest normal row.
    #[arg(short = 'k', allow_hyphen_values = true)]
    pub k: i64,
    /// Ground truth per query, 1 anomalous and 0 normal (N .npy, bool or numbers): adds
    /// `roc_auc` to the JSON line.
    #[arg(long)]
    pub flags: Option<PathBuf>,
    /// Write the scores here (float32 N .npy).
    #[arg(long)]
    pub scores: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// A count flag as a usize, or the usage error that it is not positive.
fn positive(flag: &str, v: i64) -> Result<usize, Failure> {
    usize::try_from(v)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| Failure::usage(format!("{flag} {v}: must be at least 1")))
}

fn views<'a>(
    set: &'a Set,
    reference: Option<&'a Set>,
) -> Result<(Embeddings<'a>, Option<Embeddings<'a>>), Failure> {
    Ok((
        set.x.view("embeddings")?,
        reference.map(|r| r.x.view("reference")).transpose()?,
    ))
}

pub(crate) fn stats(a: StatsArgs) -> Result<ExitCode, Failure> {
    if a.bins <= 0 {
        return Err(Failure::usage(format!(
            "--bins {}: must be at least 1",
            a.bins
        )));
    }
    for (flag, v) in [
        ("--active-share", a.active_share),
        ("--quantile", a.quantile),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Failure::usage(format!("{flag} {v}: must be in [0, 1]")));
        }
    }
    let (set, reference) = a.set.read()?;
    let (x, r) = views(&set, reference.as_ref())?;
    let opts = PairStats {
        distance: a.common.distance(),
        bins: a.bins as usize,
        hi: a.range,
    };
    let rl = reference.as_ref().map(|s| s.labels.as_slice());
    let labelled = r.as_ref().zip(rl);
    opts.validate((&x, &set.labels), labelled)?;
    let png = Outputs::prepare(&[("png", &a.png)])?;
    let h = match a.common.device.open()? {
        Some(gpu) => opts.histograms(&gpu, (&x, &set.labels), labelled)?,
        None => opts.histograms_cpu((&x, &set.labels), labelled)?,
    };
    let suggested = h.suggestions(a.active_share, a.quantile);
    if a.png.is_some() {
        // The given margins, then the suggested dissimilar margins.
        let margins: Vec<f64> = [a.pos_margin, a.margin]
            .into_iter()
            .chain(
                suggested
                    .iter()
                    .filter(|s| s.option == "margin")
                    .filter_map(|s| s.value),
            )
            .collect();
        png.commit_encoded(&[plot::histograms(&h, &margins)?])?;
    }
    let mut json = Map::new();
    json.insert("distance".into(), opts.distance.name().into());
    json.insert("device".into(), a.common.device.name().into());
    json.insert("bins".into(), h.bins().into());
    json.insert("range".into(), json!([0.0, f64::from(h.hi)]));
    for (name, kind) in [
        ("similar", PairKind::Similar),
        ("dissimilar", PairKind::Dissimilar),
    ] {
        json.insert(name.into(), side(&h, kind));
    }
    json.insert("overlap".into(), h.overlap().into());
    json.insert(
        "active".into(),
        json!({
            "pos_margin": a.pos_margin,
            "margin": a.margin,
            "similar_share": h.active_share(PairKind::Similar, a.pos_margin),
            "dissimilar_share": h.active_share(PairKind::Dissimilar, a.margin),
        }),
    );
    json.insert(
        "suggested".into(),
        suggested
            .iter()
            .map(|s| json!({"option": s.option, "rule": s.rule, "value": s.value}))
            .collect(),
    );
    out!("{}", Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

/// One kind's pairs: their count, counts per bin, quantiles and active share per edge.
fn side(h: &Histograms, kind: PairKind) -> Value {
    let (counts, above) = h.counts(kind);
    let quantiles: Map<String, Value> = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]
        .iter()
        .map(|&q| (q.to_string(), h.quantile(kind, q).into()))
        .collect();
    json!({
        "pairs": h.pairs(kind),
        "counts": counts,
        "above_range": above,
        "quantiles": quantiles,
        "active_share_at_edges": h.edges().iter().map(|&m| h.active_share(kind, m)).collect::<Vec<_>>(),
    })
}

/// The k-NN of `q` against `r` on the chosen device.
fn neighbours(
    knn: &Knn,
    device: DeviceArg,
    q: &Embeddings<'_>,
    r: &Embeddings<'_>,
) -> Result<Neighbours, Failure> {
    knn.validate(q, r)?;
    Ok(match device.open()? {
        Some(gpu) => knn.search(&gpu, q, r)?,
        None => knn.search_cpu(q, r)?,
    })
}

pub(crate) fn knn(a: KnnArgs) -> Result<ExitCode, Failure> {
    let k = positive("-k", a.k)?;
    let (q, r) = a.rows.read()?;
    let knn = Knn::new(k)
        .distance(a.common.distance())
        .exclude_self(a.exclude_self);
    let outputs = Outputs::prepare(&[
        ("indices", &Some(a.indices.clone())),
        ("distances", &a.distances),
    ])?;
    let nn = neighbours(
        &knn,
        a.common.device,
        &q.view("queries")?,
        &r.view("reference")?,
    )?;
    let references = r.rows;
    // The inputs are done with: their memory goes before the outputs are encoded.
    drop((q, r));
    let shape = [nn.queries(), k];
    let indices: Vec<i64> = nn.indices.iter().map(|&i| i64::from(i)).collect();
    let mut files = vec![npy::to_bytes_i64(&shape, &indices)];
    drop(indices);
    if a.distances.is_some() {
        let distances: Vec<f32> = nn.distances.iter().map(|&d| d as f32).collect();
        files.push(npy::to_bytes_f32(&shape, &distances));
    }
    outputs.commit_encoded(&files)?;
    out!(
        "{}",
        json!({
            "queries": nn.queries(),
            "references": references,
            "k": k,
            "distance": knn.distance.name(),
            "exclude_self": a.exclude_self,
            "device": a.common.device.name(),
            "mean_kth_distance": mean(&nn.kth_distances()),
        })
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn retrieval(a: RetrievalArgs) -> Result<ExitCode, Failure> {
    let k = positive("-k", a.k)?;
    let (set, reference) = a.set.read()?;
    let (x, r) = views(&set, reference.as_ref())?;
    let rl = reference.as_ref().map(|s| s.labels.as_slice());
    let labelled = r.as_ref().zip(rl);
    let metrics = Retrieval {
        distance: a.common.distance(),
        recall_ks: vec![k],
    };
    metrics.validate(&x, &set.labels, labelled)?;
    let m = match a.common.device.open()? {
        Some(gpu) => metrics.evaluate(&gpu, &x, &set.labels, labelled)?,
        None => metrics.evaluate_cpu(&x, &set.labels, labelled)?,
    };
    out!(
        "{}",
        json!({
            "precision_at_1": m.precision_at_1,
            "r_precision": m.r_precision,
            "map_at_r": m.map_at_r,
            "recall_at_k": m.recall_at_k[0].1,
            "k": k,
            "queries": m.queries,
            "lone_queries": m.lone_queries,
            "distance": metrics.distance.name(),
            "device": a.common.device.name(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn score(a: ScoreArgs) -> Result<ExitCode, Failure> {
    let k = positive("-k", a.k)?;
    let (q, r) = a.rows.read()?;
    let flags = a
        .flags
        .as_deref()
        .map(|p| io::zero_one("flags", p, q.rows, ("normal", "anomalous")))
        .transpose()?;
    if let Some(f) = &flags {
        if f.iter().all(|&x| x) || !f.iter().any(|&x| x) {
            return Err(Failure::usage(
                "--flags: the ROC AUC needs at least one anomalous (1) and one normal (0) row",
            ));
        }
    }
    let knn = Knn::new(k).distance(a.common.distance());
    let outputs = Outputs::prepare(&[("scores", &Some(a.scores.clone()))])?;
    let nn = neighbours(
        &knn,
        a.common.device,
        &q.view("queries")?,
        &r.view("reference")?,
    )?;
    let scores = nn.kth_distances();
    let auc = flags.as_deref().map(|f| roc_auc(&scores, f)).transpose()?;
    let as_f32: Vec<f32> = scores.iter().map(|&s| s as f32).collect();
    outputs.commit_encoded(&[npy::to_bytes_f32(&[scores.len()], &as_f32)])?;
    let mut json = Map::new();
    json.insert("queries".into(), scores.len().into());
    json.insert("references".into(), r.rows.into());
    json.insert("k".into(), k.into());
    json.insert("distance".into(), knn.distance.name().into());
    json.insert("device".into(), a.common.device.name().into());
    json.insert("mean_score".into(), mean(&scores).into());
    if let Some(auc) = auc {
        json.insert("roc_auc".into(), auc.into());
    }
    out!("{}", Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn dims(flag: &str, q: &Matrix, r: &Matrix) -> Result<(), Failure> {
    if q.dim != r.dim {
        return Err(Failure::usage(format!(
            "--reference has dimension {} but --{flag} has {}",
            r.dim, q.dim
        )));
    }
    Ok(())
}
