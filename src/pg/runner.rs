//! The single place where a PostgreSQL client tool's command is built. A [`Runner`] turns a tool
//! and the connection's environment into a `Command`: the argv never holds a secret (the
//! connection goes through libpq's environment variables), and what the parent's environment
//! says about connections is cleared first. [`Local`] runs the tools on this machine; a
//! container runner (docker exec) plugs in here. Children are then started by
//! [`crate::runtime::process::spawn`], which makes them die with us.

use std::path::Path;
use std::process::Command;

/// Builds the command that runs a client tool.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// The command running `program` with the connection's libpq environment `conn_env` (empty
    /// for a tool that does not connect). Arguments are added by the caller.
    fn command(&self, program: &Path, conn_env: &[(String, String)]) -> Command;
}

/// Runs the tools on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Runner for Local {
    fn command(&self, program: &Path, conn_env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(program);
        crate::pg::conninfo::apply_child_env(&mut cmd, conn_env);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_goes_through_the_environment_and_nothing_leaks_from_ours() {
        let env = vec![("PGPASSWORD".to_string(), "s3cret-pw".to_string())];
        let cmd = Local.command(Path::new("/usr/bin/env"), &env);
        assert_eq!(cmd.get_args().count(), 0, "no argument is added");
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs
            .iter()
            .any(|(k, v)| *k == "PGPASSWORD" && v.is_some_and(|v| v == "s3cret-pw")));
        assert!(
            envs.iter()
                .any(|(k, v)| *k == "DATABASE_URL" && v.is_none()),
            "DATABASE_URL is removed"
        );
        assert!(
            envs.iter().any(|(k, v)| *k == "PGHOST" && v.is_none()),
            "our own PGHOST does not reach the tool"
        );
    }
}
