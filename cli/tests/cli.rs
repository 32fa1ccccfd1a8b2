//! The CLI: bad input exits 2 with one line on stderr and no panic; good input prints one
//! JSON object and writes the gradients asked for.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{assert_usage_error, cli, common, json_field, Dir};

#[test]
fn bad_input_exits_2_with_one_line() {
    let d = Dir::new("bad");
    let x = d.f32s("x.npy", "(3, 2)", &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let l = d.i64s("l.npy", &[0, 1, 0]);
    let l2 = d.i64s("l2.npy", &[0, 1]);
    let a4 = d.f32s("a4.npy", "(3, 4)", &[0.0; 12]);
    let nan = d.f32s("nan.npy", "(3, 2)", &[0.0, 1.0, 2.0, f32::NAN, 4.0, 5.0]);
    let big = d.f32s("big.npy", "(3, 2)", &[0.0, 1.0, 2.0, 3.0, 2e15, 5.0]);
    let empty = d.f32s("empty.npy", "(0, 2)", &[]);
    let zero_d = d.f32s("zerod.npy", "(3, 0)", &[]);
    let vec1 = d.f32s("v.npy", "(6,)", &[0.0; 6]);
    let int_x = d.npy("ix.npy", "<i4", "(3, 2)", &[0u8; 24]);
    let float_l = d.f32s("fl.npy", "(3,)", &[0.0, 1.0, 0.0]);
    let y_bad = d.f32s("yb.npy", "(3,)", &[0.0, 2.0, 1.0]);
    let y = d.f32s("y.npy", "(3,)", &[0.0, 1.0, 1.0]);
    let garbage = d.path("garbage.npy");
    std::fs::write(&garbage, b"this is not numpy").unwrap();
    let garbage = garbage.to_string_lossy().into_owned();
    let missing = d.path("missing.npy").to_string_lossy().into_owned();
    let c = "contrastive";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &missing,
                "--labels",
                &l,
            ],
            "missing.npy",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &garbage,
                "--labels",
                &l,
            ],
            "not a .npy",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &int_x, "--labels", &l],
            "int32",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &float_l,
            ],
            "not int32 or int64",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &vec1, "--labels", &l],
            "2-D",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &x, "--labels", &x],
            "1-D",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &x, "--labels", &l2],
            "rows",
        ),
        (
            vec!["eval", "--loss", c, "--a", &x, "--b", &a4, "--y", &y],
            "dimension",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &empty, "--labels", &l],
            "empty",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &zero_d, "--labels", &l],
            "dimension 0",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &nan, "--labels", &l],
            "row 1, column 1",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &big, "--labels", &l],
            "row 2, column 0",
        ),
        (
            vec!["eval", "--loss", c, "--a", &x, "--b", &x, "--y", &y_bad],
            "0 (dissimilar) or 1",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--margin",
                "-1",
            ],
            "--margin",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--margin",
                "nan",
            ],
            "--margin",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--pos-margin",
                "inf",
            ],
            "--pos-margin",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--margin",
                "abc",
            ],
            "abc",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--frobnicate",
            ],
            "frobnicate",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--distance",
                "manhattan",
            ],
            "manhattan",
        ),
        (
            vec![
                "eval",
                "--loss",
                "arcface",
                "--embeddings",
                &x,
                "--labels",
                &l,
            ],
            "arcface",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--device",
                "tpu",
            ],
            "tpu",
        ),
        (
            vec![
                "eval", "--loss", c, "--a", &x, "--b", &x, "--y", &y, "--grad", "g.npy",
            ],
            "--grad",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--grad-a",
                "g.npy",
            ],
            "--grad-a",
        ),
        (
            vec![
                "eval",
                "--loss",
                c,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--a",
                &x,
            ],
            "not both",
        ),
        (vec!["eval", "--loss", c], "no input"),
        (
            vec!["eval", "--loss", c, "--a", &x, "--y", &y],
            "--b is missing",
        ),
        (
            vec!["eval", "--loss", c, "--embeddings", &x],
            "--labels is missing",
        ),
        (vec!["eval", "--embeddings", &x, "--labels", &l], "--loss"),
        (vec!["check", "--batch", "0"], "--batch"),
        (
            vec!["bench", "--loss", c, "--batch", "0", "--dim", "4"],
            "--batch",
        ),
        (vec!["bench", "--loss", c, "--dim", "4"], "--batch"),
        (
            vec![
                "bench", "--loss", c, "--batch", "8", "--dim", "4", "--mode", "triplets",
            ],
            "triplets",
        ),
        (vec!["bench", "--loss", c, "--embeddings", &x], "--labels"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in &cases {
        assert_usage_error(args, needle);
    }
}

#[test]
fn eval_batch_on_cpu_and_gpu_with_gradients() {
    let d = Dir::new("ok");
    // The hand-worked batch: loss 25.25/3, 1 similar and 2 dissimilar pairs, 2 active.
    let x = d.f32s("x.npy", "(3, 2)", &[0.0, 0.0, 3.0, 4.0, 0.0, 0.5]);
    let l = d.npy(
        "l.npy",
        "<i4",
        "(3,)",
        &[7, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0],
    );
    let g = d.path("g.npy");
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    for device in devices {
        let out = cli(&[
            "eval",
            "--loss",
            "contrastive",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "--device",
            device,
            "--grad",
            g.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.trim_end();
        assert_eq!(line.lines().count(), 1, "{stdout}");
        let loss: f64 = json_field(line, "loss").parse().unwrap();
        assert!((loss - 25.25 / 3.0).abs() < 1e-5, "{line}");
        assert_eq!(json_field(line, "device"), format!("\"{device}\""));
        assert_eq!(json_field(line, "similar_pairs"), "1");
        assert_eq!(json_field(line, "dissimilar_pairs"), "2");
        assert_eq!(json_field(line, "active_terms"), "2");
        if device == "cpu" {
            assert_eq!(json_field(line, "adapter"), "null");
        }
        let grad = metric_loss_cli::npy::read(Path::new(&g)).unwrap();
        assert_eq!(grad.shape, vec![3, 2]);
        let gv = grad.to_f32().unwrap();
        let want = [-2.0, -7.0 / 3.0, 2.0, 8.0 / 3.0, 0.0, -1.0 / 3.0];
        for (a, b) in gv.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{gv:?}");
        }
    }
}

#[test]
fn eval_pairs_writes_both_gradients_and_accepts_float64() {
    let d = Dir::new("pairs");
    let a: Vec<u8> = [0.0f64, 0.0, 0.0, 0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = d.npy("a.npy", "<f8", "(2, 2)", &a);
    let b = d.f32s("b.npy", "(2, 2)", &[3.0, 4.0, 0.0, 0.5]);
    let y = d.npy(
        "y.npy",
        "<i8",
        "(2,)",
        &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let (ga, gb) = (d.path("ga.npy"), d.path("gb.npy"));
    let out = cli(&[
        "eval",
        "--loss",
        "contrastive",
        "--a",
        &a,
        "--b",
        &b,
        "--y",
        &y,
        "--device",
        "cpu",
        "--reduction",
        "sum",
        "--grad-a",
        ga.to_str().unwrap(),
        "--grad-b",
        gb.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    // 25 + 0.25
    assert_eq!(json_field(line.trim(), "loss"), "25.25");
    for p in [&ga, &gb] {
        assert_eq!(metric_loss_cli::npy::read(p).unwrap().shape, vec![2, 2]);
    }
}

#[test]
fn check_passes_on_a_small_grid() {
    if common::gpu().is_none() {
        return;
    }
    let out = cli(&["check", "--batch", "9", "--dim", "3", "--seed", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // 72 contrastive cases, 48 explicit-triplet, 36 mined-triplet, 60 softmax (12 at each
    // of 5 temperatures), 16 SigLIP (4 at each of 4 settings), 30 Multi-Similarity and
    // Circle (5 batches at 6 settings) and 21 ArcFace, CosFace and sub-centres (3 inputs at
    // 7 settings; none of the structured ones left out for a sub-centre tie here).
    assert!(stdout.contains("303 passed, 0 failed"), "{stdout}");
    assert_eq!(stdout.matches("PASS").count(), 303);
}

#[test]
fn bench_prints_a_json_line() {
    if common::gpu().is_none() {
        return;
    }
    for mode in ["batch", "pairs"] {
        let out = cli(&[
            "bench",
            "--loss",
            "contrastive",
            "--batch",
            "40",
            "--dim",
            "6",
            "--mode",
            mode,
            "--repeat",
            "2",
            "--json",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.trim_end().lines().last().unwrap();
        let v: serde_json::Value = serde_json::from_str(last).unwrap();
        for key in [
            "median_s",
            "gflops",
            "pairs_per_s",
            "batch",
            "dim",
            "adapter",
            "active_fraction",
        ] {
            assert!(!v[key].is_null(), "{mode}: {key} missing in {last}");
        }
        assert_eq!(v["batch"], 40);
        let frac = v["active_fraction"].as_f64().unwrap();
        assert!(frac > 0.0 && frac <= 1.0, "{last}");
        // The executed FLOPs against the FMA peak probed in the same process.
        let peak = v["peak_fma_flops"].as_f64().unwrap();
        let share = v["fma_peak_fraction"].as_f64().unwrap();
        assert!(peak > 0.0 && share > 0.0, "{last}");
        assert!(v["kernel_flops"].as_f64().unwrap() > 0.0, "{last}");
        assert!(v["engine"].is_string(), "{last}");
    }
}

#[test]
fn bench_measures_the_peak_and_tunes() {
    if common::gpu().is_none() {
        return;
    }
    let out = cli(&["bench", "--peak", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
    assert!(v["peak_fma_flops"].as_f64().unwrap() > 0.0, "{stdout}");
    assert!(
        v["peak_storage_bytes_per_s"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );
    // --peak takes no loss.
    let out = cli(&["bench", "--peak", "--loss", "clip"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&[
        "bench", "--loss", "ntxent", "--batch", "48", "--dim", "5", "--repeat", "1", "--tune",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Every configuration lavapipe runs (with subgroups: all three), then the fastest.
    for name in ["rows-direct", "tile", "fastest:"] {
        assert!(stdout.contains(name), "{name} missing in {stdout}");
    }
}

#[test]
fn triplet_bad_input_exits_2_with_one_line() {
    let d = Dir::new("tbad");
    let x = d.f32s("x.npy", "(3, 2)", &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let x2 = d.f32s("x2.npy", "(2, 2)", &[0.0, 1.0, 2.0, 3.0]);
    let x3 = d.f32s("x3.npy", "(3, 3)", &[0.0; 9]);
    let nan = d.f32s("nan.npy", "(3, 2)", &[0.0, 1.0, 2.0, f32::NAN, 4.0, 5.0]);
    let l = d.i64s("l.npy", &[0, 1, 0]);
    let g = d.path("g.npy").to_string_lossy().into_owned();
    let t = "triplet";
    let explicit = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "eval",
            "--loss",
            t,
            "--anchor",
            &x,
            "--positive",
            &x,
            "--negative",
            &x,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mined = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["eval", "--loss", t, "--embeddings", &x, "--labels", &l]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (explicit(&["--soft", "--margin", "0.5"]), "--margin"),
        (mined(&["--mining", "hard", "--swap"]), "swap"),
        (mined(&["--mining", "all", "--soft"]), "soft"),
        (mined(&[]), "--mining is missing"),
        (explicit(&["--mining", "hard"]), "not both"),
        (explicit(&["--pos-margin", "0.5"]), "--pos-margin"),
        (explicit(&["--hinge", "linear"]), "--hinge"),
        (explicit(&["--grad", &g]), "--grad-anchor"),
        (mined(&["--mining", "hard", "--grad-anchor", &g]), "--grad"),
        (
            mined(&["--mining", "hard", "--reduction", "mean-nonzero"]),
            "mean-nonzero",
        ),
        (explicit(&["--reduction", "mean-nonzero"]), "mean-nonzero"),
        (mined(&["--mining", "all", "--reduction", "sum"]), "sum"),
        (explicit(&["--margin", "-1"]), "--margin"),
        (explicit(&["--margin", "nan"]), "--margin"),
        (
            vec![
                "eval",
                "--loss",
                t,
                "--anchor",
                &x,
                "--positive",
                &x2,
                "--negative",
                &x,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "--positive has 2 rows",
        ),
        (
            vec![
                "eval",
                "--loss",
                t,
                "--anchor",
                &x,
                "--positive",
                &x,
                "--negative",
                &x3,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "dimension",
        ),
        (
            vec![
                "eval",
                "--loss",
                t,
                "--anchor",
                &nan,
                "--positive",
                &x,
                "--negative",
                &x,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "row 1, column 1",
        ),
        (
            vec!["eval", "--loss", t, "--anchor", &x, "--positive", &x]
                .into_iter()
                .map(String::from)
                .collect(),
            "--negative is missing",
        ),
        (
            vec![
                "eval",
                "--loss",
                "contrastive",
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--swap",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "--swap",
        ),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_usage_error(&args, needle);
    }
}

#[test]
fn eval_triplet_explicit_and_mined_by_hand() {
    let d = Dir::new("tok");
    // tests/triplet.rs explicit_by_hand: mean 1, 3 triplets, 2 active.
    let a = d.f32s("a.npy", "(3, 2)", &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
    let p = d.f32s("p.npy", "(3, 2)", &[3.0, 4.0, 0.0, 2.0, 1.0, 1.0]);
    let n = d.f32s("n.npy", "(3, 2)", &[6.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
    // tests/triplet.rs hard_by_hand: 1-D batch, loss 5 over 5 anchors, 4 active.
    let x = d.f32s("x.npy", "(5, 1)", &[0.0, 1.0, 3.0, 6.0, 10.0]);
    let l = d.i64s("l.npy", &[0, 0, 1, 1, 0]);
    let (ga, gp, gn, g) = (
        d.path("ga.npy"),
        d.path("gp.npy"),
        d.path("gn.npy"),
        d.path("g.npy"),
    );
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    for device in devices {
        let out = cli(&[
            "eval",
            "--loss",
            "triplet",
            "--anchor",
            &a,
            "--positive",
            &p,
            "--negative",
            &n,
            "--device",
            device,
            "--grad-anchor",
            ga.to_str().unwrap(),
            "--grad-positive",
            gp.to_str().unwrap(),
            "--grad-negative",
            gn.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        let loss: f64 = json_field(&line, "loss").parse().unwrap();
        assert!((loss - 1.0).abs() < 1e-6, "{line}");
        assert_eq!(json_field(&line, "terms"), "3");
        assert_eq!(json_field(&line, "term_kind"), "\"triplets\"");
        assert_eq!(json_field(&line, "active_terms"), "2");
        assert_eq!(json_field(&line, "mining"), "null");
        let s = 1.0 / 3.0;
        for (path, want) in [
            (&ga, [0.0, 0.0, s, -s, 0.0, 0.0]),
            (&gp, [0.0, 0.0, 0.0, s, 0.0, 0.0]),
            (&gn, [0.0, 0.0, -s, 0.0, 0.0, 0.0]),
        ] {
            let got = metric_loss_cli::npy::read(path).unwrap().to_f32().unwrap();
            for (a, b) in got.iter().zip(want) {
                assert!((f64::from(*a) - b).abs() < 1e-6, "{device} {got:?}");
            }
        }
        let out = cli(&[
            "eval",
            "--loss",
            "triplet",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "--mining",
            "hard",
            "--device",
            device,
            "--grad",
            g.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        let loss: f64 = json_field(&line, "loss").parse().unwrap();
        assert!((loss - 5.0).abs() < 1e-5, "{line}");
        assert_eq!(json_field(&line, "terms"), "5");
        assert_eq!(json_field(&line, "term_kind"), "\"anchors\"");
        assert_eq!(json_field(&line, "active_terms"), "4");
        assert_eq!(json_field(&line, "mining"), "\"hard\"");
        assert_eq!(json_field(&line, "reduction"), "\"mean\"");
        let got = metric_loss_cli::npy::read(&g).unwrap().to_f32().unwrap();
        for (a, b) in got.iter().zip([-0.2, 0.2, -0.8, 0.4, 0.4]) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{device} {got:?}");
        }
    }
}

#[test]
fn bench_covers_triplets() {
    if common::gpu().is_none() {
        return;
    }
    for (mode, mining, unit) in [
        ("batch", "hard", "pairs_per_s"),
        ("batch", "semihard", "pairs_per_s"),
        ("batch", "all", "triplets_per_s"),
        ("triplets", "hard", "triplets_per_s"),
    ] {
        let out = cli(&[
            "bench", "--loss", "triplet", "--batch", "40", "--dim", "6", "--mode", mode,
            "--mining", mining, "--repeat", "2", "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
        assert!(v[unit].as_f64().unwrap() > 0.0, "{mode} {mining}: {v}");
        assert!(v["terms"].as_u64().unwrap() > 0, "{v}");
    }
}

#[test]
fn softmax_bad_input_exits_2_with_one_line() {
    let d = Dir::new("softmax-bad");
    let x = d.f32s("x.npy", "(4, 2)", &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    let l = d.i64s("l.npy", &[0, 1, 0, 1]);
    let y = d.f32s("y.npy", "(3, 2)", &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    let w = d.f32s("w.npy", "(4, 3)", &[0.5; 12]);
    let batch = [
        "eval",
        "--loss",
        "ntxent",
        "--embeddings",
        &x,
        "--labels",
        &l,
    ];
    for t in ["0", "9e-5", "-0.1", "nan", "inf", "1e16"] {
        let mut args = batch.to_vec();
        args.extend(["--temperature", t]);
        assert_usage_error(&args, "--temperature");
    }
    for (flag, value) in [
        ("--margin", "1"),
        ("--distance", "cosine"),
        ("--reduction", "sum"),
        ("--mining", "hard"),
        ("--grad-a", "ga.npy"),
        ("--a", x.as_str()),
    ] {
        let mut args = batch.to_vec();
        args.extend([flag, value]);
        assert_usage_error(&args, flag);
    }
    assert_usage_error(&batch[..5], "--labels is missing");
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "supcon",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "--normalize",
        ],
        "--normalize",
    );
    assert_usage_error(
        &["eval", "--loss", "clip", "--embeddings", &x, "--labels", &l],
        "--embeddings",
    );
    assert_usage_error(&["eval", "--loss", "clip", "--a", &x], "--b is missing");
    assert_usage_error(&["eval", "--loss", "clip", "--a", &x, "--b", &y], "rows");
    assert_usage_error(
        &["eval", "--loss", "clip", "--a", &x, "--b", &w],
        "dimension",
    );
    assert_usage_error(
        &[
            "eval", "--loss", "clip", "--a", &x, "--b", &x, "--grad", "g.npy",
        ],
        "--grad",
    );
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "contrastive",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "--temperature",
            "0.1",
        ],
        "--temperature",
    );
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "triplet",
            "--anchor",
            &x,
            "--positive",
            &x,
            "--negative",
            &x,
            "--temperature",
            "0.1",
        ],
        "--temperature",
    );
}

#[test]
fn eval_softmax_by_hand() {
    // Two samples, two views on orthogonal axes, τ = 1 (tests/softmax.rs works the values):
    // NT-Xent and SupCon: loss log(e + 2) − 1, dL/dτ = 2/(e + 2), dx0 = (0, 1/(e + 2)) for
    // NT-Xent; CLIP with A = B = I: loss log(e + 1) − 1, dL/dτ = 1/(e + 1).
    let e = std::f64::consts::E;
    let d = Dir::new("softmax-ok");
    let x = d.f32s("x.npy", "(4, 2)", &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    let l = d.i64s("l.npy", &[0, 1, 0, 1]);
    let i2 = d.f32s("i.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let (g, ga, gb) = (d.path("g.npy"), d.path("ga.npy"), d.path("gb.npy"));
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    let close = |line: &str, key: &str, want: f64| {
        let v: f64 = json_field(line, key).parse().unwrap();
        assert!((v - want).abs() < 1e-5, "{key}: {line}");
    };
    for device in devices {
        for loss in ["ntxent", "supcon"] {
            let out = cli(&[
                "eval",
                "--loss",
                loss,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--temperature",
                "1",
                "--device",
                device,
                "--grad",
                g.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.trim_end();
            assert_eq!(line.lines().count(), 1, "{stdout}");
            close(line, "loss", (e + 2.0).ln() - 1.0);
            close(line, "grad_temperature", 2.0 / (e + 2.0));
            close(line, "temperature", 1.0);
            assert_eq!(json_field(line, "terms"), "4");
            let kind = if loss == "ntxent" {
                "\"positive_pairs\""
            } else {
                "\"anchors\""
            };
            assert_eq!(json_field(line, "term_kind"), kind);
            let grad = metric_loss_cli::npy::read(&g).unwrap();
            assert_eq!(grad.shape, vec![4, 2]);
            if loss == "ntxent" {
                let gv = grad.to_f32().unwrap();
                assert!(gv[0].abs() < 1e-6 && (f64::from(gv[1]) - 1.0 / (e + 2.0)).abs() < 1e-6);
            }
        }
        let out = cli(&[
            "eval",
            "--loss",
            "clip",
            "--a",
            &i2,
            "--b",
            &i2,
            "--temperature",
            "1",
            "--device",
            device,
            "--grad-a",
            ga.to_str().unwrap(),
            "--grad-b",
            gb.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.trim_end();
        close(line, "loss", (e + 1.0).ln() - 1.0);
        close(line, "grad_temperature", 1.0 / (e + 1.0));
        assert_eq!(json_field(line, "terms"), "2");
        for p in [&ga, &gb] {
            assert_eq!(metric_loss_cli::npy::read(p).unwrap().shape, vec![2, 2]);
        }
        // The default temperature is reported when none is given.
        let out = cli(&[
            "eval",
            "--loss",
            "supcon",
            "--embeddings",
            &x,
            "--labels",
            &l,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        close(stdout.trim_end(), "temperature", 0.1);
    }
}

#[test]
fn eval_infonce_by_hand() {
    // Anchors e1, e2 against keys e1, e2, e1 at scale 1 (tests/infonce.rs works the values):
    // loss ((log(2e + 1) − 1) + (log(e + 2) − 1)) / 2; with labels (7, 8 | 7, 8, 7) key 2
    // leaves anchor 0's sum: ((log(e + 1) − 1) + (log(e + 2) − 1)) / 2.
    let e = std::f64::consts::E;
    let d = Dir::new("infonce-ok");
    let a = d.f32s("a.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let k = d.f32s("k.npy", "(3, 2)", &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    let la = d.i64s("la.npy", &[7, 8]);
    let lb = d.i64s("lb.npy", &[7, 8, 7]);
    let (ga, gb) = (d.path("ga.npy"), d.path("gb.npy"));
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    let plain = 0.5 * ((2.0 * e + 1.0).ln() - 1.0 + (e + 2.0).ln() - 1.0);
    let masked = 0.5 * ((e + 1.0).ln() - 1.0 + (e + 2.0).ln() - 1.0);
    for device in devices {
        for (labels, want) in [(false, plain), (true, masked)] {
            let mut args = vec![
                "eval", "--loss", "infonce", "--a", &a, "--b", &k, "--scale", "1", "--device",
                device,
            ];
            let (gas, gbs) = (ga.to_str().unwrap(), gb.to_str().unwrap());
            args.extend(["--grad-a", gas, "--grad-b", gbs]);
            if labels {
                args.extend(["--labels-a", &la, "--labels-b", &lb]);
            }
            let out = cli(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.trim_end();
            let v: f64 = json_field(line, "loss").parse().unwrap();
            assert!((v - want).abs() < 1e-5, "{line}");
            assert_eq!(json_field(line, "scale"), "1.0");
            assert_eq!(json_field(line, "symmetric"), "false");
            assert_eq!(json_field(line, "terms"), "2");
            assert!(
                json_field(line, "grad_scale").parse::<f64>().is_ok(),
                "{line}"
            );
            assert!(!line.contains("temperature"), "{line}");
            assert_eq!(metric_loss_cli::npy::read(&ga).unwrap().shape, vec![2, 2]);
            assert_eq!(metric_loss_cli::npy::read(&gb).unwrap().shape, vec![3, 2]);
        }
        let out = cli(&[
            "eval",
            "--loss",
            "infonce",
            "--a",
            &a,
            "--b",
            &k,
            "--symmetric",
            "--device",
            device,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(json_field(stdout.trim_end(), "symmetric"), "true");
        assert_eq!(json_field(stdout.trim_end(), "scale"), "20.0");
    }
    // Fewer keys than anchors, a non-positive scale, one of the two label files, labels of
    // the wrong length, and flags of other losses: exit 2 with one line.
    let short = d.f32s("short.npy", "(1, 2)", &[1.0, 0.0]);
    let base = ["eval", "--loss", "infonce", "--a", &a, "--b", &k];
    assert_usage_error(
        &["eval", "--loss", "infonce", "--a", &a, "--b", &short],
        "a key per anchor",
    );
    for s in ["0", "-1", "nan", "inf"] {
        let mut args = base.to_vec();
        args.extend(["--scale", s]);
        assert_usage_error(&args, "--scale");
    }
    let mut args = base.to_vec();
    args.extend(["--labels-a", &la]);
    assert_usage_error(&args, "go together");
    let mut args = base.to_vec();
    args.extend(["--labels-a", &lb, "--labels-b", &la]);
    assert_usage_error(&args, "--labels-a has 3 rows");
    for (flag, value) in [("--temperature", "0.1"), ("--embeddings", a.as_str())] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        assert_usage_error(&args, flag);
    }
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "clip",
            "--a",
            &a,
            "--b",
            &a,
            "--symmetric",
        ],
        "--symmetric",
    );
}

#[test]
fn eval_against_a_reference_set() {
    // The batch as its own reference would be the in-batch loss; here two orthogonal queries
    // against three references at τ = 1: query 0 (label 0) has positive reference 0 (e1),
    // its SupCon denominator the three references (logits 1, 0, 1): ℓ_0 = log(2e + 1) − 1;
    // query 1 (label 1) has positive reference 1 (e2), logits (0, 1, 0): log(e + 2) − 1.
    let e = std::f64::consts::E;
    let d = Dir::new("against-ok");
    let q = d.f32s("q.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let ql = d.i64s("ql.npy", &[0, 1]);
    let r = d.f32s("r.npy", "(3, 2)", &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    let rl = d.i64s("rl.npy", &[0, 1, 2]);
    let (gq, gr) = (d.path("gq.npy"), d.path("gr.npy"));
    let want = 0.5 * ((2.0 * e + 1.0).ln() - 1.0 + (e + 2.0).ln() - 1.0);
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    for device in devices {
        for returned in [false, true] {
            let mut args = vec![
                "eval",
                "--loss",
                "supcon",
                "--embeddings",
                &q,
                "--labels",
                &ql,
                "--reference",
                &r,
                "--reference-labels",
                &rl,
                "--temperature",
                "1",
                "--device",
                device,
                "--grad",
                gq.to_str().unwrap(),
            ];
            if returned {
                args.extend(["--grad-reference", gr.to_str().unwrap()]);
            }
            let out = cli(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.trim_end();
            let v: f64 = json_field(line, "loss").parse().unwrap();
            assert!((v - want).abs() < 1e-5, "{line}");
            assert_eq!(json_field(line, "reference_rows"), "3");
            let g = if returned {
                "\"returned\""
            } else {
                "\"detached\""
            };
            assert_eq!(json_field(line, "reference_grad"), g);
            assert_eq!(json_field(line, "terms"), "2");
            assert_eq!(metric_loss_cli::npy::read(&gq).unwrap().shape, vec![2, 2]);
            if returned {
                assert_eq!(metric_loss_cli::npy::read(&gr).unwrap().shape, vec![3, 2]);
            }
        }
    }
    let base = [
        "eval",
        "--loss",
        "ntxent",
        "--embeddings",
        &q,
        "--labels",
        &ql,
    ];
    let mut args = base.to_vec();
    args.extend(["--reference", &r]);
    assert_usage_error(&args, "go together");
    let mut args = base.to_vec();
    args.extend(["--grad-reference", "gr.npy"]);
    assert_usage_error(&args, "needs --reference");
    let mut args = base.to_vec();
    args.extend(["--reference", &r, "--reference-labels", &ql]);
    assert_usage_error(&args, "--reference-labels has 2 rows");
    let wide = d.f32s("w.npy", "(3, 3)", &[0.0; 9]);
    let mut args = base.to_vec();
    args.extend(["--reference", &wide, "--reference-labels", &rl]);
    assert_usage_error(&args, "columns");
    // Contrastive: the two queries against the three references, margin 2, squared hinge,
    // mean over the 6 pairs: the similar pairs are at distance 0, the dissimilar ones at
    // √2 (three of them) or 0 (query 0 and reference 2, labels 0 and 2): ((2 − √2)²·3 + 4)/6.
    let want = ((2.0 - 2f64.sqrt()).powi(2) * 3.0 + 4.0) / 6.0;
    let out = cli(&[
        "eval",
        "--loss",
        "contrastive",
        "--embeddings",
        &q,
        "--labels",
        &ql,
        "--reference",
        &r,
        "--reference-labels",
        &rl,
        "--margin",
        "2",
        "--device",
        "cpu",
        "--grad-reference",
        gr.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.trim_end();
    let v: f64 = json_field(line, "loss").parse().unwrap();
    assert!((v - want).abs() < 1e-6, "{line}");
    assert_eq!(json_field(line, "similar_pairs"), "2");
    assert_eq!(json_field(line, "reference_grad"), "\"returned\"");
    assert_eq!(metric_loss_cli::npy::read(&gr).unwrap().shape, vec![3, 2]);
    // Mined triplets: the two queries as anchors against the three references (a positive
    // and two negatives each, so semi-hard forms one term per anchor), GPU beside CPU.
    let mut losses = Vec::new();
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    for device in devices {
        let out = cli(&[
            "eval",
            "--loss",
            "triplet",
            "--mining",
            "semihard",
            "--embeddings",
            &q,
            "--labels",
            &ql,
            "--reference",
            &r,
            "--reference-labels",
            &rl,
            "--device",
            device,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.trim_end();
        assert_eq!(json_field(line, "terms"), "2", "{line}");
        assert_eq!(json_field(line, "reference_grad"), "\"detached\"");
        losses.push(json_field(line, "loss").parse::<f64>().unwrap());
    }
    assert!(
        losses.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-6),
        "{losses:?}"
    );
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "triplet",
            "--anchor",
            &q,
            "--positive",
            &q,
            "--negative",
            &q,
            "--reference",
            &r,
            "--reference-labels",
            &rl,
        ],
        "mined triplets",
    );
}

#[test]
fn bench_against_a_reference_queue() {
    if common::gpu().is_none() {
        return;
    }
    for loss in ["contrastive", "ntxent", "supcon"] {
        let out = cli(&[
            "bench",
            "--loss",
            loss,
            "--batch",
            "40",
            "--reference-rows",
            "100",
            "--dim",
            "6",
            "--repeat",
            "2",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
        assert_eq!(v["mode"], "against 100 detached reference rows", "{v}");
        assert!(v["pairs_per_s"].as_f64().unwrap() > 0.0, "{loss}: {v}");
    }
    assert_usage_error(
        &[
            "bench",
            "--loss",
            "clip",
            "--batch",
            "8",
            "--dim",
            "2",
            "--reference-rows",
            "9",
        ],
        "--reference-rows",
    );
    assert_usage_error(
        &[
            "bench",
            "--loss",
            "triplet",
            "--batch",
            "8",
            "--dim",
            "2",
            "--reference-rows",
            "9",
        ],
        "--reference-rows",
    );
}

#[test]
fn bench_covers_softmax() {
    if common::gpu().is_none() {
        return;
    }
    for loss in ["ntxent", "supcon", "clip", "infonce"] {
        let out = cli(&[
            "bench", "--loss", loss, "--batch", "40", "--dim", "6", "--repeat", "2", "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
        assert!(v["pairs_per_s"].as_f64().unwrap() > 0.0, "{loss}: {v}");
        assert!(v["gflops"].as_f64().unwrap() > 0.0, "{loss}: {v}");
        assert!(v["terms"].as_u64().unwrap() > 0, "{v}");
    }
}

#[test]
fn size_and_magnitude_limits_exit_2_with_one_line() {
    let d = Dir::new("limits");
    // A squared distance of 9e14-sized values overflows the contrastive squared hinge.
    let big = d.f32s("big.npy", "(3, 2)", &[0.0, 1.0, 2.0, 3.0, 9e14, 5.0]);
    let l = d.i64s("l.npy", &[0, 1, 0]);
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "contrastive",
            "--embeddings",
            &big,
            "--labels",
            &l,
            "--distance",
            "squared-euclidean",
        ],
        "too large",
    );
    // A header that promises 2^32 + 1 rows with no data behind it.
    let huge = d.npy("huge.npy", "<f4", "(4294967297, 2)", &[]);
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "contrastive",
            "--embeddings",
            &huge,
            "--labels",
            &l,
        ],
        "huge.npy",
    );
    let c = "contrastive";
    for (batch, dim, needle) in [
        ("100000000000", "4", "32-bit row indices"),
        ("4000000000", "4000000000", "too many values"),
        // 2.3 GB of embeddings: above lavapipe's 2 GiB max_buffer_size (or, on a small
        // host, above what it can allocate).
        ("9000000", "64", "needs"),
    ] {
        assert_usage_error(
            &["bench", "--loss", c, "--batch", batch, "--dim", dim],
            needle,
        );
    }
}

/// `cli` with extra environment variables.
fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_metric-loss"));
    c.args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn check_refuses_sizes_it_cannot_hold_before_its_header() {
    for (batch, dim, needle) in [
        ("100000000000", "4", "32-bit row indices"),
        ("4000000000", "4000000000", "too many values"),
        ("3000000000", "1000", "host memory"),
    ] {
        assert_usage_error(&["check", "--batch", batch, "--dim", dim], needle);
    }
}

#[test]
fn a_failed_write_to_stdout_is_an_error_not_a_pass() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full on this system
    };
    let d = Dir::new("full");
    let x = d.f32s("x.npy", "(3, 2)", &[0.0, 0.0, 3.0, 4.0, 0.0, 0.5]);
    let l = d.i64s("l.npy", &[0, 1, 0]);
    let mut runs: Vec<Vec<&str>> = vec![vec![
        "eval",
        "--loss",
        "contrastive",
        "--embeddings",
        &x,
        "--labels",
        &l,
        "--device",
        "cpu",
    ]];
    if common::gpu().is_some() {
        runs.push(vec!["check", "--batch", "5", "--dim", "2"]);
        runs.push(vec![
            "bench",
            "--loss",
            "contrastive",
            "--batch",
            "16",
            "--dim",
            "4",
            "--repeat",
            "1",
        ]);
        runs.push(vec!["info"]);
    }
    for args in runs {
        let out = Command::new(env!("CARGO_BIN_EXE_metric-loss"))
            .args(&args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("writing to stdout"), "{args:?}: {stderr}");
    }
}

#[test]
fn input_errors_are_found_before_any_device_is_opened() {
    // No adapter at all: an input error must still be named (exit 2), not "no GPU adapter".
    let none = [("WGPU_BACKEND", "metal")];
    let d = Dir::new("before-device");
    let big = d.f32s("big.npy", "(3, 2)", &[0.0, 1.0, 2.0, 3.0, 9e14, 5.0]);
    let l = d.i64s("l.npy", &[0, 1, 0]);
    let l2 = d.i64s("l2.npy", &[0, 1]);
    let b = "contrastive";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "eval",
                "--loss",
                b,
                "--embeddings",
                &big,
                "--labels",
                &l,
                "--distance",
                "squared-euclidean",
            ],
            "too large",
        ),
        (
            vec![
                "bench", "--loss", b, "--batch", "64", "--dim", "4", "--margin", "2e15",
            ],
            "margin",
        ),
        (
            vec![
                "bench",
                "--loss",
                "ntxent",
                "--batch",
                "64",
                "--dim",
                "4",
                "--temperature",
                "1e-6",
            ],
            "temperature",
        ),
        (
            vec!["bench", "--loss", b, "--embeddings", &big, "--labels", &l2],
            "rows",
        ),
    ];
    for (args, needle) in cases {
        let out = cli_env(&args, &none);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("adapter"), "{args:?}: {stderr}");
    }
    // Valid input with no adapter is a failure while running (exit 1).
    let x = d.f32s("x.npy", "(3, 2)", &[0.0; 6]);
    let out = cli_env(
        &["eval", "--loss", b, "--embeddings", &x, "--labels", &l],
        &none,
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn outputs_are_checked_up_front_and_written_all_or_none() {
    let d = Dir::new("outputs");
    let a = d.f32s("a.npy", "(2, 2)", &[0.0, 0.0, 1.0, 0.0]);
    let b = d.f32s("b.npy", "(2, 2)", &[3.0, 4.0, 0.0, 0.5]);
    let y = d.i64s("y.npy", &[1, 0]);
    let ga = d.path("ga.npy");
    let ga_s = ga.to_string_lossy().into_owned();
    let pairs = |grad_a: &str, grad_b: &str| -> Output {
        cli(&[
            "eval",
            "--loss",
            "contrastive",
            "--a",
            &a,
            "--b",
            &b,
            "--y",
            &y,
            "--device",
            "cpu",
            "--grad-a",
            grad_a,
            "--grad-b",
            grad_b,
        ])
    };
    let missing_dir = d.path("no/such/dir/gb.npy");
    let under_a_file = format!("{a}/gb.npy");
    for (second, needle) in [
        (missing_dir.to_string_lossy().into_owned(), "directory"),
        (under_a_file, "directory"),
        (ga_s.clone(), "also the path of --grad-a"),
        (d.0.to_string_lossy().into_owned(), "is a directory"),
    ] {
        let out = pairs(&ga_s, &second);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{second}: {stderr}");
        assert!(stderr.contains(needle), "{second}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty());
        assert!(!ga.exists(), "{second}: the first output was written");
        // No temporary file is left behind either.
        let left: Vec<_> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    let gb = d.path("gb.npy");
    let out = pairs(&ga_s, &gb.to_string_lossy());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ga.exists() && gb.exists());
}

#[test]
fn no_subcommand_is_a_usage_error_and_empty_variables_are_unset() {
    let out = cli(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    assert!(out.stdout.is_empty());
    if common::gpu().is_none() {
        return;
    }
    for var in ["WGPU_BACKEND", "WGPU_ADAPTER_NAME"] {
        let out = cli_env(&["info"], &[(var, "")]);
        assert!(
            out.status.success(),
            "{var}=: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_stream_is_refused_at_its_magic_string() {
    let d = Dir::new("stream");
    let l = d.i64s("l.npy", &[0, 1, 0]);
    let start = std::time::Instant::now();
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "contrastive",
            "--embeddings",
            "/dev/zero",
            "--labels",
            &l,
        ],
        "not a .npy file",
    );
    assert!(start.elapsed().as_secs() < 10, "read the stream");
}
