#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridcase_fuzzing::grids_geojson(data));
