//! `eval --loss arcface|cosface` on hand-worked values on both devices (both gradients
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
            let out = cli(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
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
        "--classes goes with --loss arcface and cosface",
    );
}

#[test]
fn bench_with_classes() {
    if common::gpu().is_none() {
        return;
    }
    let out = cli(&[
        "bench",
        "--loss",
        "cosface",
        "--batch",
        "70",
        "--dim",
        "16",
        "--classes",
        "3000",
        "--repeat",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap();
    assert_eq!(json_field(line, "loss"), "\"cosface\"");
    assert_eq!(json_field(line, "mode"), "\"against 3000 classes\"");
    assert_eq!(json_field(line, "kernel_flops_rule"), "\"10·B·C·D\"");
}
