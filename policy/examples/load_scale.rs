// SPDX-License-Identifier: GPL-3.0-or-later
//! Benchmark: loading every policy of a directory of N top-level rooms with vault volumes
//! (`cargo run --release -p anchor-policy --example load_scale -- 1000`), file by file with
//! `load` (each load checks the file's volume against every other file: quadratic) and at
//! once with `load_dir` (each file read and parsed once: what anchor-vault does at unlock).
//! Prints figures; asserts only that both ways give the same answers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("anchor-load-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for i in 0..n {
        let text = format!(
            "name = \"r{i}\"\nimage = \"base\"\nbackend = \"microvm\"\n[resources]\n\
             memory = \"512MiB\"\nvcpus = 1\n[persist]\nvolume = \"v{i}\"\nsize = \"16MiB\"\n"
        );
        std::fs::write(dir.join(format!("r{i}.toml")), text)?;
    }
    let t = std::time::Instant::now();
    let each: Vec<_> = anchor_policy::policy_files(&dir)?
        .into_iter()
        .map(|f| (f.clone(), anchor_policy::load(&f)))
        .collect();
    let each_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let all = anchor_policy::load_dir(&dir)?;
    let all_s = t.elapsed().as_secs_f64();
    if each != all {
        return Err("load and load_dir disagree".into());
    }
    println!(
        "figure: {n} policies with volumes: load file by file {each_s:.3} s, load_dir {all_s:.3} s"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
