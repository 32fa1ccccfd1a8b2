//! `metric-loss bench`: time forward + backward calls through the host API.
//!
//! Inputs follow the project's benchmark rules: Gaussian rows, L2-normalised, `normalize`
//! off, margin 1.5 for contrastive (most dissimilar pairs sit inside it) and 1 for triplet,
//! labels uniform over B/8 classes (pairs: y uniform over 0/1). NT-Xent and SupCon take two
//! views of B/2 samples (labels i mod B/2, SimCLR's setting); CLIP, InfoNCE and SigLIP
//! (t′ = ln 10, b = −10) two independent B×D views; Multi-Similarity and Circle (PML's
//! defaults) a batch with labels uniform over B/8 classes; ArcFace and CosFace (PML's
//! defaults) B rows against `--classes` C unit-row class weights, class indices uniform
//! below C. Every pair's term is evaluated whatever the data.
//!
//! `mod.rs` checks the arguments, `workload.rs` builds the inputs and the call,
//! [`time`] runs it, `report.rs` prints what was measured.

mod report;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use metric_loss::{EngineConfig, Gpu, Precision, SoftmaxLoss};

use crate::eval::{DeviceArg, LossName, MiningArg};
use crate::Failure;
use workload::Workload;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// In-batch: every pair (contrastive) or mined triplets (triplet) of a labelled batch.
    Batch,
    /// Contrastive over explicit pairs.
    Pairs,
    /// Triplet over explicit (anchor, positive, negative) rows.
    Triplets,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// The loss.
    #[arg(long, value_enum, required_unless_present = "peak")]
    loss: Option<LossName>,
    /// Only measure the adapter's FMA throughput and storage bandwidth (a register-only and
    /// a streaming kernel), the ceilings every bench result is reported against.
    #[arg(long, conflicts_with_all = ["loss", "tune"])]
    peak: bool,
    /// Time the call under every pair-engine configuration the adapter runs and name the
    /// fastest (the library never tunes itself at run time: set METRIC_LOSS_ENGINE or
    /// GpuOptions::engine to use it).
    #[arg(long)]
    tune: bool,
    /// Rows (B in batch mode, N pairs or triplets otherwise).
    #[arg(long, default_value_t = 0, required_unless_present_any = ["embeddings", "peak"])]
    batch: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 0, required_unless_present_any = ["embeddings", "peak"])]
    dim: usize,
    /// In-batch, explicit pairs (contrastive) or explicit triplets (triplet).
    #[arg(long, value_enum, default_value = "batch")]
    mode: ModeArg,
    /// Triplet in batch mode: the mining rule.
    #[arg(long, value_enum, default_value = "hard")]
    mining: MiningArg,
    /// Timed calls.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Untimed calls first (pipeline compilation, allocation).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Where the loss runs.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceArg,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Seed of the generated inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// contrastive, ntxent, supcon: compare the B generated queries with this many generated
    /// reference rows (a detached MoCo-style queue) instead of with each other.
    #[arg(long)]
    reference_rows: Option<usize>,
    /// Batch mode: time these embeddings (B×D .npy) instead of generated ones.
    #[arg(long, requires = "labels")]
    embeddings: Option<PathBuf>,
    /// Batch mode: their integer labels (B .npy).
    #[arg(long, requires = "embeddings")]
    labels: Option<PathBuf>,
    /// Margin m (default 1.5 for contrastive, 1 for triplet).
    #[arg(long)]
    margin: Option<f32>,
    /// arcface, cosface, subcenter-arcface: the number of classes C (the class weights are
    /// C·K generated unit rows, each row's class uniform below C).
    #[arg(long)]
    classes: Option<usize>,
    /// subcenter-arcface: K, sub-centres per class (default 3).
    #[arg(long)]
    sub_centers: Option<u32>,
    /// ntxent, supcon, clip: the temperature (default 0.07; supcon 0.1); infonce: 1/scale
    /// (default 0.05, scale 20; as many keys as anchors, no reverse term).
    #[arg(long)]
    temperature: Option<f32>,
    /// The rows' format: f32, or f16 (the same rows rounded; needs SHADER_F16; a float16
    /// --embeddings file is f16 either way).
    #[arg(long, default_value = "f32", value_parser = crate::parse_precision)]
    precision: Precision,
}

impl BenchArgs {
    /// The loss (`--loss` is required unless `--peak`, which returns before any loss).
    fn loss(&self) -> LossName {
        self.loss.unwrap_or(LossName::Contrastive)
    }

    /// K, the sub-centres a class (1 but for subcenter-arcface).
    fn sub_centers(&self) -> u32 {
        match self.loss() {
            LossName::SubcenterArcface => self.sub_centers.unwrap_or(3),
            _ => 1,
        }
    }

    /// The class weights' rows, C·K (`--classes`).
    fn class_rows(&self) -> Option<usize> {
        self.classes
            .map(|c| c.saturating_mul(self.sub_centers() as usize))
    }

    /// The softmax loss `--loss` names, if it names one.
    fn softmax(&self) -> Option<SoftmaxLoss> {
        match self.loss() {
            LossName::Ntxent => Some(SoftmaxLoss::NtXent),
            LossName::Supcon => Some(SoftmaxLoss::SupCon),
            LossName::Clip => Some(SoftmaxLoss::Clip),
            LossName::Infonce => Some(SoftmaxLoss::InfoNce { symmetric: false }),
            _ => None,
        }
    }

    /// Whether the loss takes two views A and B (CLIP, InfoNCE, SigLIP) rather than a
    /// labelled batch.
    fn views(&self) -> bool {
        self.loss() == LossName::Siglip || self.softmax().is_some_and(SoftmaxLoss::takes_views)
    }

    /// The flags that go together: every conflict is a usage error before anything runs.
    fn check(&self) -> Result<(), Failure> {
        let softmax = self.softmax();
        let triplet = self.loss() == LossName::Triplet;
        if self.tune && self.device != DeviceArg::Gpu {
            return Err(Failure::usage("--tune applies to --device gpu"));
        }
        let refuse = |why: &str| Err(Failure::usage(why));
        let proxy = matches!(
            self.loss(),
            LossName::Arcface | LossName::Cosface | LossName::SubcenterArcface
        );
        if proxy != self.classes.is_some() {
            return refuse(
                "--classes goes with --loss arcface, cosface and subcenter-arcface, and they \
                 need it",
            );
        }
        if proxy && (self.embeddings.is_some() || self.reference_rows.is_some()) {
            return refuse(
                "--loss arcface, cosface and subcenter-arcface run on generated rows and classes",
            );
        }
        if self.sub_centers.is_some() && self.loss() != LossName::SubcenterArcface {
            return refuse("--sub-centers applies to --loss subcenter-arcface");
        }
        if self.classes == Some(0) {
            return refuse("--classes must be at least 1");
        }
        let batch_only = softmax.is_some()
            || self.views()
            || proxy
            || matches!(self.loss(), LossName::MultiSimilarity | LossName::Circle);
        if batch_only && self.mode != ModeArg::Batch {
            return refuse(
                "--mode applies to contrastive and triplet; the other losses run in-batch",
            );
        }
        if softmax.is_none() && self.temperature.is_some() {
            return refuse("--temperature applies to --loss ntxent, supcon, clip and infonce");
        }
        if self.views() && self.embeddings.is_some() {
            return refuse(
                "--embeddings/--labels apply to a labelled batch, not to --loss clip, infonce or \
                 siglip",
            );
        }
        if self.reference_rows.is_some() {
            let takes =
                self.loss() == LossName::Contrastive || softmax.is_some_and(|s| !s.takes_views());
            if !takes || self.mode != ModeArg::Batch || self.embeddings.is_some() {
                return refuse(
                    "--reference-rows applies to --loss contrastive, ntxent and supcon in batch \
                     mode on generated inputs",
                );
            }
            if self.reference_rows == Some(0) {
                return refuse("--reference-rows must be at least 1");
            }
        }
        match (triplet, self.mode) {
            (true, ModeArg::Pairs) => {
                refuse("--mode pairs applies to contrastive; triplet takes batch or triplets")
            }
            (false, ModeArg::Triplets) => {
                refuse("--mode triplets applies to triplet; contrastive takes batch or pairs")
            }
            _ if self.embeddings.is_some() && self.mode != ModeArg::Batch => {
                refuse("--embeddings/--labels apply to --mode batch")
            }
            _ => Ok(()),
        }
    }
}

/// The measured times of `repeat` calls after `warmup` untimed ones: per-call wall times,
/// kernel times (GPU timestamps, where available) and the last call's (terms, active).
pub(crate) struct Timing {
    pub wall: Vec<f64>,
    pub kernel: Vec<f64>,
    pub counts: (u64, u64),
}

fn time(
    work: &Workload<'_>,
    gpu: &Option<Gpu>,
    warmup: usize,
    repeat: usize,
    label: String,
) -> Result<Timing, Failure> {
    let bar = indicatif::ProgressBar::new((repeat + warmup) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} calls, {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(label);
    for _ in 0..warmup {
        work.call(gpu)?;
        bar.inc(1);
    }
    let mut t = Timing {
        wall: Vec::new(),
        kernel: Vec::new(),
        counts: (0, 0),
    };
    for _ in 0..repeat {
        let start = Instant::now();
        t.counts = work.call(gpu)?;
        t.wall.push(start.elapsed().as_secs_f64());
        if let Some(k) = gpu.as_ref().and_then(|g| g.last_kernel_seconds()) {
            t.kernel.push(k);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(t)
}

pub(crate) fn run(args: BenchArgs) -> Result<ExitCode, Failure> {
    if args.peak {
        return report::peak(&args);
    }
    args.check()?;
    let cfg = workload::Config::new(&args)?;
    let given = workload::Inputs::given(&args)?;
    let (b, d) = match &given {
        Some(x) => (x.rows, x.dim),
        None => (args.batch, args.dim),
    };
    if b == 0 || d == 0 || args.repeat == 0 {
        return Err(Failure::usage(
            "--batch, --dim and --repeat must be at least 1",
        ));
    }
    crate::io::host_sizes(b, d, 1 + workload::Inputs::sides(&args))?;
    if let Some(m) = args.reference_rows.or(args.class_rows()) {
        crate::io::host_sizes(m, d, 1)?;
    }
    cfg.check_size(args.mode, b, d)?;
    if let Some(x) = &given {
        // The loss's own checks of given values (the magnitude limit), before any device.
        Workload::new(cfg, args.mode, x)?;
    }
    // Every input error is found: only now open the device, and check that the inputs fit
    // its buffers before generating them.
    let mut gpu = args.device.open()?;
    if let Some(g) = gpu.as_mut() {
        let (bytes, limit) = ((b * d * 4) as u64, g.limits().max_buffer_size);
        if bytes > limit {
            return Err(Failure::usage(format!(
                "--batch {b} × --dim {d} needs {bytes} bytes of embeddings, but the device \
                 allows at most {limit} per buffer; use a smaller batch or dimension"
            )));
        }
        g.set_profiling(true);
    }
    let inputs = match given {
        Some(x) => x,
        None => workload::Inputs::generate(&args, b, d),
    };
    let work = Workload::new(cfg, args.mode, &inputs)?;
    let label = format!("B={} D={}", inputs.rows, inputs.dim);
    if args.tune {
        let mut rows = Vec::new();
        for engine in EngineConfig::ALL {
            if gpu.as_mut().is_none_or(|g| g.set_engine(engine).is_err()) {
                continue;
            }
            let t = time(
                &work,
                &gpu,
                args.warmup,
                args.repeat,
                format!("{label} {engine}"),
            )?;
            rows.push((engine, report::median(&t.wall)));
        }
        return report::tune(&rows);
    }
    let timing = time(&work, &gpu, args.warmup, args.repeat, label)?;
    // The FMA ceiling measured in this process, after the timed calls (the bandwidth probe's
    // buffer would count in a measured peak memory: `--peak` runs it).
    let peak = match &gpu {
        Some(g) => Some(g.probe_fma()?),
        None => None,
    };
    report::print(&args, &work, &inputs, &gpu, &timing, peak)?;
    Ok(ExitCode::SUCCESS)
}
