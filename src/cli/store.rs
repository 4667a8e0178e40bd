//! `tocsin store migrate --to postgres://...`: moves an SQLite store into PostgreSQL, the
//! step from one instance to several.

use clap::Subcommand;

use crate::config::Config;
use crate::store::PgOptions;

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy the SQLite database in data_dir (state, incidents and their timelines, the
    /// outbox, campaigns and their recipients, opt-outs, maintenance, link keys, history)
    /// into an empty PostgreSQL database. Stop tocsin first: a database in use is refused.
    Migrate {
        /// The PostgreSQL database, e.g. postgres://tocsin@db.internal:5432/tocsin
        /// (no password in it).
        #[arg(long)]
        to: String,
        /// The environment variable holding the password.
        #[arg(long, default_value = "PGPASSWORD")]
        password_env: String,
    },
}

/// Runs the command; Err is the message to print (exit 1).
pub fn run(config: &Config, cmd: StoreCmd) -> Result<String, String> {
    match cmd {
        StoreCmd::Migrate { to, password_env } => {
            if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
                return Err(format!(
                    "--to must be a PostgreSQL URL such as postgres://tocsin@db.internal:5432/tocsin, not `{to}`"
                ));
            }
            let opts = PgOptions {
                url: to.clone(),
                password: crate::secret::process_env(&password_env),
                password_env,
                timeout: std::time::Duration::from_secs(30),
            };
            opts.config().map_err(|e| e.to_string())?;
            let written = <tokio_postgres::Config as std::str::FromStr>::from_str(&to)
                .map_err(|e| e.to_string())?;
            if written.get_password().is_some() {
                return Err(format!(
                    "--to carries a password: keep it out of the command line (and the shell's history) and put it in the environment variable {}",
                    opts.password_env
                ));
            }
            let from = config.data_dir.join("tocsin.db");
            if !from.exists() {
                return Err(format!(
                    "{} does not exist: there is nothing to migrate (data_dir is {})",
                    from.display(),
                    config.data_dir.display()
                ));
            }
            let copied =
                crate::store::migrate_to_postgres(&from, &opts).map_err(|e| e.to_string())?;
            let total: u64 = copied.iter().map(|(_, n)| n).sum();
            let mut out = format!(
                "copied {} from {} to {}:\n",
                crate::text::count(total, "row"),
                from.display(),
                opts.place()
            );
            for (table, n) in copied.iter().filter(|(_, n)| *n > 0) {
                out.push_str(&format!("  {table:<20} {n:>8}\n"));
            }
            out.push_str(&format!(
                "set `store: {to}` in {} and start tocsin; keep {} as it is until you are sure",
                config.source.display(),
                from.display()
            ));
            Ok(out)
        }
    }
}
