//! What the CLI's test binaries share: a temporary directory of .npy inputs, running the
//! binary, and the checks of a usage error and of a JSON line.
#![allow(dead_code)]

/// Whether a GPU adapter is there for the GPU cases (under `CI=true` a missing one fails).
pub mod common {
    pub fn gpu() -> Option<()> {
        static GPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let found = *GPU.get_or_init(|| match metric_loss::Gpu::new() {
            Ok(_) => true,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and no GPU adapter: {e}")
            }
            Err(_) => false,
        });
        found.then_some(())
    }
}

use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("metric-loss-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes an .npy with the given descr and shape; `bytes` is the raw data section.
    pub fn npy(&self, name: &str, descr: &str, shape: &str, bytes: &[u8]) -> String {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(bytes);
        let p = self.path(name);
        std::fs::write(&p, out).unwrap();
        p.to_string_lossy().into_owned()
    }

    pub fn f32s(&self, name: &str, shape: &str, v: &[f32]) -> String {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.npy(name, "<f4", shape, &b)
    }

    pub fn i64s(&self, name: &str, v: &[i64]) -> String {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.npy(name, "<i8", &format!("({},)", v.len()), &b)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metric-loss"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

pub fn assert_usage_error(args: &[&str], needle: &str) {
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {stderr:?} does not mention {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{args:?}: printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

pub fn json_field(line: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v[key].to_string()
}
