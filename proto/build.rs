//! Generates the gRPC code from `proto/gridcase/**`. protoc comes from
//! `protoc-bin-vendored`, so a fresh machine needs no protobuf compiler.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "gridcase/common/v1/common.proto",
        "gridcase/intake/v1/intake.proto",
        "gridcase/cases/v1/cases.proto",
        "gridcase/query/v1/query.proto",
        "gridcase/auth/v1/auth.proto",
        "gridcase/admin/v1/admin.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("gridcase_descriptor.bin"))
        .compile_with_config(config, &protos.map(PathBuf::from), &[PathBuf::from("."), include])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
