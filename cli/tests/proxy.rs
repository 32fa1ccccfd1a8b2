//! `eval --loss arcface|cosface|subcenter-arcface` on hand-worked values on both devices (both gradients
//! written), `bench --classes`, and their bad inputs an exit 2 with one line before any
//! device is opened.

mod support;

use support::{assert_usage_error, cli, common, json_field, Dir};

fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu"];
    if common::gpu().is_some() {
        d.push("gpu");
    }
    d
}

#[test]
fn eval_by_hand() {
    // x = e1 against W = (e1, e2), class 0, s = 1 (tests/proxy.rs works the values):
    // CosFace m = 0.35: L = log(e^0.65 + 1) − 0.65; ArcFace m = 60°: log(e^0.5 + 1) − 0.5.
    let d = Dir::new("proxy-ok");
    let x = d.f32s("x.npy", "(1, 2)", &[1.0, 0.0]);
    let w = d.f32s("w.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let l = d.i64s("l.npy", &[0]);
    let (g, gw) = (d.path("g.npy"), d.path("gw.npy"));
    let ce = |z0: f64| (z0.exp() + 1.0).ln() - z0;
    for device in devices() {
        for (loss, margin, want) in [("cosface", "0.35", ce(0.65)), ("arcface", "60", ce(0.5))] {
            let args = [
                "eval",
                "--loss",
                loss,
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--weights",
                &w,
                "--margin",
                margin,
                "--scale",
                "1",
                "--device",
                device,
                "--grad",
                g.to_str().unwrap(),
                "--grad-weights",
                gw.to_str().unwrap(),
            ];
            let line = json_line(&args);
            let v: f64 = json_field(&line, "loss").parse().unwrap();
            assert!((v - want).abs() < 1e-6, "{line}: {want}");
            assert_eq!(json_field(&line, "classes"), "2");
            assert_eq!(json_field(&line, "terms"), "1");
            assert_eq!(metric_loss_cli::npy::read(&g).unwrap().shape, vec![1, 2]);
            assert_eq!(metric_loss_cli::npy::read(&gw).unwrap().shape, vec![2, 2]);
        }
    }
}

#[test]
fn bad_inputs() {
    let d = Dir::new("proxy-bad");
    let x = d.f32s("x.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let w = d.f32s("w.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let l = d.i64s("l.npy", &[0, 2]);
    let neg = d.i64s("n.npy", &[0, -1]);
    let ok = d.i64s("ok.npy", &[0, 1]);
    let base = [
        "eval",
        "--loss",
        "arcface",
        "--embeddings",
        &x,
        "--weights",
        &w,
    ];
    assert_usage_error(
        &[&base[..], &["--labels", &l]].concat(),
        "class indices: 1 query with an index of no class",
    );
    assert_usage_error(&[&base[..], &["--labels", &neg]].concat(), "class index -1");
    assert_usage_error(
        &[&base[..], &["--labels", &ok, "--margin", "180"]].concat(),
        "margin",
    );
    assert_usage_error(
        &[&base[..], &["--labels", &ok, "--scale", "0"]].concat(),
        "scale",
    );
    assert_usage_error(
        &[
            "eval",
            "--loss",
            "cosface",
            "--embeddings",
            &x,
            "--labels",
            &ok,
        ],
        "needs --embeddings, --labels and --weights",
    );
    assert_usage_error(
        &[&base[..], &["--labels", &ok, "--gamma", "3"]].concat(),
        "--gamma does not apply to --loss arcface",
    );
    assert_usage_error(
        &["bench", "--loss", "arcface", "--batch", "8", "--dim", "4"],
        "--classes goes with --loss arcface, cosface and subcenter-arcface",
    );
    assert_usage_error(
        &[&base[..], &["--labels", &ok, "--sub-centers", "2"]].concat(),
        "--sub-centers does not apply to --loss arcface",
    );
    let sub = [
        "eval",
        "--loss",
        "subcenter-arcface",
        "--embeddings",
        &x,
        "--weights",
        &w,
        "--labels",
        &ok,
    ];
    // Two rows of W are not whole classes of 3 sub-centres; K = 0 is no class at all.
    assert_usage_error(&sub, "whole classes of sub-centres");
    assert_usage_error(
        &[&sub[..], &["--sub-centers", "0"]].concat(),
        "invalid sub-centers = 0",
    );
    assert_usage_error(
        &[
            "bench",
            "--loss",
            "arcface",
            "--batch",
            "8",
            "--dim",
            "4",
            "--classes",
            "8",
            "--sub-centers",
            "2",
        ],
        "--sub-centers applies to --loss subcenter-arcface",
    );
}

#[test]
fn sub_centres_by_hand() {
    // x = e1 against class 0's sub-centres (e2, e1) and class 1's (−e1, (e1 + e2)/√2),
    // ArcFace m = 60°, s = 1: class 0's cosine 1 (ψ = cos 60° = 0.5), class 1's 1/√2:
    // L = log(e^0.5 + e^(1/√2)) − 0.5; sub-centres 0 and 2 get no gradient.
    let d = Dir::new("proxy-sub");
    let r = std::f32::consts::FRAC_1_SQRT_2;
    let x = d.f32s("x.npy", "(1, 2)", &[1.0, 0.0]);
    let w = d.f32s("w.npy", "(4, 2)", &[0.0, 1.0, 1.0, 0.0, -1.0, 0.0, r, r]);
    let l = d.i64s("l.npy", &[0]);
    let gw = d.path("gw.npy");
    let c1 = f64::from(r) * f64::from(r) * 2f64.sqrt();
    let want = (0.5f64.exp() + c1.exp()).ln() - 0.5;
    for device in devices() {
        let line = json_line(&[
            "eval",
            "--loss",
            "subcenter-arcface",
            "--sub-centers",
            "2",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "--weights",
            &w,
            "--margin",
            "60",
            "--scale",
            "1",
            "--device",
            device,
            "--grad-weights",
            gw.to_str().unwrap(),
        ]);
        let v: f64 = json_field(&line, "loss").parse().unwrap();
        assert!((v - want).abs() < 1e-6, "{line}: {want}");
        assert_eq!(json_field(&line, "classes"), "2");
        assert_eq!(json_field(&line, "sub_centers"), "2");
        let g = metric_loss_cli::npy::read(&gw).unwrap();
        assert_eq!(g.shape, vec![4, 2]);
        let g = g.to_f32().unwrap();
        assert_eq!((g[0], g[1], g[4], g[5]), (0.0, 0.0, 0.0, 0.0), "{g:?}");
    }
}

/// The last stdout line of a run that must succeed (its stderr shown when it does not).
fn json_line(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().unwrap_or_default().to_string()
}

/// `bench --loss LOSS --batch 70 --dim 16 --classes C --json`: its JSON line.
fn bench_line(loss: &str, classes: &str) -> String {
    json_line(&[
        "bench",
        "--loss",
        loss,
        "--batch",
        "70",
        "--dim",
        "16",
        "--classes",
        classes,
        "--repeat",
        "1",
        "--json",
    ])
}

#[test]
fn bench_with_classes() {
    if common::gpu().is_none() {
        return;
    }
    let line = bench_line("cosface", "3000");
    assert_eq!(json_field(&line, "loss"), "\"cosface\"");
    assert_eq!(json_field(&line, "mode"), "\"against 3000 classes\"");
    assert_eq!(json_field(&line, "kernel_flops_rule"), "\"10·B·C·D\"");
    let line = bench_line("subcenter-arcface", "1000");
    assert_eq!(json_field(&line, "loss"), "\"subcenter-arcface\"");
    assert_eq!(
        json_field(&line, "mode"),
        "\"against 1000 classes × 3 sub-centres\""
    );
    assert_eq!(json_field(&line, "kernel_flops_rule"), "\"10·B·C·K·D\"");
}
