//! `stats`, `knn`, `retrieval` and `score`: hand-worked inputs on both devices, the output
//! files, and every bad input an exit 2 with one line before any device is opened.

mod support;

use std::path::Path;

use support::{assert_usage_error, cli, common, json_field, Dir};

fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu"];
    if common::gpu().is_some() {
        d.push("gpu");
    }
    d
}

fn ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    stdout
}

/// Four points on a line at 0, 1, 3, 7, labelled a a b b.
fn line(d: &Dir) -> (String, String) {
    let x = d.f32s("x.npy", "(4, 1)", &[0.0, 1.0, 3.0, 7.0]);
    let l = d.i64s("l.npy", &[5, 5, 9, 9]);
    (x, l)
}

#[test]
fn knn_and_score_by_hand() {
    let d = Dir::new("knn");
    let (x, _) = line(&d);
    let i = d.path("i.npy");
    let dist = d.path("dist.npy");
    let s = d.path("s.npy");
    let flags = d.i64s("f.npy", &[0, 0, 0, 1]);
    for device in devices() {
        let out = ok(&[
            "knn",
            "--queries",
            &x,
            "--reference",
            &x,
            "-k",
            "2",
            "--exclude-self",
            "--indices",
            i.to_str().unwrap(),
            "--distances",
            dist.to_str().unwrap(),
            "--device",
            device,
        ]);
        assert_eq!(json_field(&out, "k"), "2");
        let idx = metric_loss_cli::npy::read(Path::new(&i)).unwrap();
        assert_eq!(idx.shape, vec![4, 2]);
        // 0: 1, 3; 1: 0 (1) then 3 (2); 3 at 3: 1 (2) then 0 (3); 7: 3 (4), 1 (6).
        assert_eq!(idx.to_i64().unwrap(), vec![1, 2, 0, 2, 1, 0, 2, 1]);
        let dv = metric_loss_cli::npy::read(Path::new(&dist)).unwrap();
        assert_eq!(
            dv.to_f32().unwrap(),
            vec![1.0, 3.0, 1.0, 2.0, 2.0, 3.0, 4.0, 6.0]
        );
        // Scores: distance to the 2nd nearest of the first three rows (0, 1, 3).
        let n = d.f32s("n.npy", "(3, 1)", &[0.0, 1.0, 3.0]);
        let out = ok(&[
            "score",
            "--queries",
            &x,
            "--reference",
            &n,
            "-k",
            "2",
            "--flags",
            &flags,
            "--scores",
            s.to_str().unwrap(),
            "--device",
            device,
        ]);
        let sv = metric_loss_cli::npy::read(Path::new(&s)).unwrap();
        assert_eq!(sv.to_f32().unwrap(), vec![1.0, 1.0, 2.0, 6.0]);
        assert_eq!(json_field(&out, "roc_auc"), "1.0");
    }
}

#[test]
fn retrieval_and_stats_by_hand() {
    let d = Dir::new("ret");
    let (x, l) = line(&d);
    let png = d.path("h.png");
    for device in devices() {
        // Nearest other rows: 0→1 (a, hit), 1→0 (hit), 3→1 (a, miss), 7→3 (hit). R = 1 each.
        let out = ok(&[
            "retrieval",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "-k",
            "2",
            "--device",
            device,
        ]);
        assert_eq!(json_field(&out, "precision_at_1"), "0.75");
        assert_eq!(json_field(&out, "r_precision"), "0.75");
        assert_eq!(json_field(&out, "map_at_r"), "0.75");
        // Within 2: 3 finds 0? No: 3's two nearest are 1 and 0 (both a): miss.
        assert_eq!(json_field(&out, "recall_at_k"), "0.75");
        // Pairs: similar {0,1} d=1, {3,7} d=4; dissimilar 3, 7, 2, 6. Largest 7 → edge 8.
        let out = ok(&[
            "stats",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "--bins",
            "8",
            "--png",
            png.to_str().unwrap(),
            "--margin",
            "5",
            "--device",
            device,
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["range"], serde_json::json!([0.0, 8.0]));
        assert_eq!(
            v["similar"]["counts"],
            serde_json::json!([0, 1, 0, 0, 1, 0, 0, 0])
        );
        assert_eq!(
            v["dissimilar"]["counts"],
            serde_json::json!([0, 0, 1, 1, 0, 0, 1, 1])
        );
        assert_eq!(v["active"]["dissimilar_share"], 0.5);
        assert_eq!(v["overlap"], 0.0);
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}

#[test]
fn bad_measurement_inputs_exit_2_with_one_line() {
    let d = Dir::new("measure-bad");
    let (x, l) = line(&d);
    let x3 = d.f32s("x3.npy", "(4, 3)", &[0.0; 12]);
    let empty = d.f32s("empty.npy", "(0, 1)", &[]);
    let l3 = d.i64s("l3.npy", &[0, 1, 0]);
    let f_bad = d.i64s("fb.npy", &[0, 2, 0, 1]);
    let f_one = d.i64s("f1.npy", &[1, 1, 1, 1]);
    let i = d.path("i.npy").to_string_lossy().into_owned();
    let s = d.path("s.npy").to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "knn",
                "--queries",
                &x,
                "--reference",
                &x,
                "-k",
                "5",
                "--indices",
                &i,
            ],
            "k = 5",
        ),
        (
            vec![
                "knn",
                "--queries",
                &x,
                "--reference",
                &x,
                "-k",
                "4",
                "--exclude-self",
                "--indices",
                &i,
            ],
            "k = 4",
        ),
        (
            vec![
                "knn",
                "--queries",
                &x,
                "--reference",
                &x,
                "-k",
                "0",
                "--indices",
                &i,
            ],
            "-k 0",
        ),
        (
            vec![
                "knn",
                "--queries",
                &x,
                "--reference",
                &empty,
                "-k",
                "1",
                "--indices",
                &i,
            ],
            "no rows",
        ),
        (
            vec![
                "knn",
                "--queries",
                &x,
                "--reference",
                &x3,
                "-k",
                "1",
                "--indices",
                &i,
            ],
            "dimension",
        ),
        (
            vec!["stats", "--embeddings", &x, "--labels", &l, "--bins", "0"],
            "--bins 0",
        ),
        (
            vec!["stats", "--embeddings", &x, "--labels", &l, "--bins", "-3"],
            "--bins -3",
        ),
        (vec!["stats", "--embeddings", &x, "--labels", &l3], "labels"),
        (
            vec![
                "stats",
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--bins",
                "5000",
            ],
            "bins",
        ),
        (
            vec![
                "stats",
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--reference",
                &x,
            ],
            "reference-labels",
        ),
        (
            vec![
                "stats",
                "--embeddings",
                &x,
                "--labels",
                &l,
                "--reference",
                &x3,
                "--reference-labels",
                &l,
            ],
            "dimension",
        ),
        (
            vec!["retrieval", "--embeddings", &x, "--labels", &l3],
            "labels",
        ),
        (
            vec!["retrieval", "--embeddings", &x, "--labels", &l, "-k", "9"],
            "k = 9",
        ),
        (
            vec![
                "score",
                "--queries",
                &x,
                "--reference",
                &x,
                "-k",
                "1",
                "--flags",
                &f_bad,
                "--scores",
                &s,
            ],
            "flags",
        ),
        (
            vec![
                "score",
                "--queries",
                &x,
                "--reference",
                &x,
                "-k",
                "1",
                "--flags",
                &f_one,
                "--scores",
                &s,
            ],
            "at least one",
        ),
        (
            vec![
                "score",
                "--queries",
                &x,
                "--reference",
                &x,
                "-k",
                "9",
                "--scores",
                &s,
            ],
            "k = 9",
        ),
    ];
    for (args, needle) in &cases {
        assert_usage_error(args, needle);
    }
    // Nothing was written.
    assert!(!Path::new(&i).exists() && !Path::new(&s).exists());
}
