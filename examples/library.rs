//! Using aos-backup as a library: back up the database in `DATABASE_URL` into the folder given
//! as the first argument, list the backups there, and verify the newest, one line each.
//!
//! ```sh
//! DATABASE_URL=postgresql://app@localhost/shop cargo run --example library -- /tmp/backups
//! ```

use aos_backup::ops::list::ListOptions;
use aos_backup::ops::verify::{Selection, VerifyOptions};
use aos_backup::Engine;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        if let Some(hint) = &e.hint {
            eprintln!("hint: {hint}");
        }
        std::process::exit(e.exit_code().code());
    }
}

async fn run() -> aos_backup::Result<()> {
    let folder = std::env::args()
        .nth(1)
        .ok_or_else(|| aos_backup::Error::usage("usage: library FOLDER (with DATABASE_URL set)"))?;
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| aos_backup::Error::usage("DATABASE_URL is not set"))?;
    let engine = Engine::new(&url, folder)?;

    let backup = engine.backup(&engine.backup_options()?).await?;
    println!(
        "backed up {} into {} ({} bytes)",
        backup.meta.database,
        backup.path.display(),
        backup.meta.size_bytes
    );

    let database = Some(backup.meta.database.clone());
    let list = engine.list(&ListOptions {
        database: database.clone(),
    })?;
    println!(
        "{} backup(s) of {} in {}",
        list.entries.len(),
        backup.meta.database,
        list.dir.display()
    );

    let verified = engine
        .verify(&VerifyOptions {
            selection: Selection::One {
                target: "latest".into(),
                database,
            },
            keys: Default::default(),
        })
        .await?;
    for r in &verified.results {
        let outcome = if r.ok { "ok" } else { "FAILED" };
        println!(
            "verified {}: {outcome} ({})",
            r.path.display(),
            r.checks.join(", ")
        );
    }
    Ok(())
}
