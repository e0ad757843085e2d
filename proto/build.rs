//! Compiles the fivesafes.v1 `.proto` files with protox (a protobuf compiler in Rust, so a
//! build needs no `protoc` on the machine) and generates the tonic services and prost types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fivesafes/v1/common.proto",
        "proto/fivesafes/v1/projects.proto",
        "proto/fivesafes/v1/reports.proto",
        "proto/fivesafes/v1/audit.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
