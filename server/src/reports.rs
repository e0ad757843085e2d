//! Canned reports over gRPC and HTTP (being wired).

/// Step 3 of the demo walk-through: a commissioner's report.
pub async fn demo_walkthrough(url: &str, token: &str) {
    let _ = (url, token);
}
