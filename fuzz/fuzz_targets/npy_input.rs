//! `.npy` parsing, conversion and input validation (body: metric_loss::check::fuzz).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| metric_loss::check::fuzz::npy_input(data));
