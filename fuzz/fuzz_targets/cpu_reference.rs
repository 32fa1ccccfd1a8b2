//! Every loss's CPU reference on arbitrary values and options (body:
//! metric_loss::check::fuzz).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| metric_loss::check::fuzz::cpu_reference(data));
