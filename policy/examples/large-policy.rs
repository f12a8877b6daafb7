//! Prints the benchmark's large policy (see benches/large_policy.rs) on standard output.

#[path = "../benches/large_policy.rs"]
mod large_policy;

fn main() {
    println!("{}", large_policy::large_policy());
}
