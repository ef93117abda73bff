//! Generates the Rust types of proto/**/*.proto with tonic-prost-build.
//! protoc comes from protoc-bin-vendored and is set for this build script
//! only (raft's own build needs its own protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_protos(
            &[
                "proto/mvccpb/kv.proto",
                "proto/authpb/auth.proto",
                "proto/etcdserverpb/rpc.proto",
                "proto/etcdserverpb/raft_internal.proto",
                "proto/v3lockpb/v3lock.proto",
                "proto/v3electionpb/v3election.proto",
            ],
            &["proto"],
        )?;
    // Member to member: both sides of the service.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &["proto/peerpb/raftmsg.proto", "proto/peerpb/peer.proto"],
            &["proto"],
        )?;
    Ok(())
}
