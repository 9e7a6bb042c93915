//! A job's plugin, as the server sees it: the options, limits and policy a
//! runner is given, and the plugin's plan, checked against the policy
//! before anything is attached. The host knows no application: what a job
//! needs comes from the plugin's own plan.

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::Context as _;
use guest_runner::plan::Plan;
use guest_runner::policy::JobLimits;

use super::Context;

/// What a runner is given beyond its command: options (through its
/// environment, never its command line, which every user of the machine or
/// guest can read), limits, the policy and the trust (the publisher keys
/// it checks the container's signatures against).
#[derive(Debug, Clone)]
pub(crate) struct RunnerAccess {
    /// Runner arguments (`--option-env`, limits, `--policy-inline`,
    /// `--trust-inline`).
    pub args: Vec<String>,
    /// Environment variables for the runner.
    pub env: Vec<(String, String)>,
}

/// The runner arguments that hand it `trust`: the trust file's text and
/// origin (its own `allow_unsigned` travels in the text), and
/// `--allow-unsigned` when the command line allowed unsigned containers.
pub(crate) fn trust_args(trust: &guest_runner::trust::Trust) -> Vec<String> {
    let mut args = vec![
        "--trust-inline".into(),
        trust.text.clone(),
        "--trust-origin".into(),
        trust.origin.clone(),
    ];
    if trust.allow_unsigned == Some(guest_runner::trust::AllowUnsigned::Flag) {
        args.push("--allow-unsigned".into());
    }
    args
}

/// The environment variable of the `i`th option.
fn option_var(i: usize) -> String {
    format!("ATTACHE_OPTION_{i}")
}

impl RunnerAccess {
    /// `options` and the application password (as the plugin's `password`
    /// option, the contract's convention for a login secret), `limits`,
    /// and the context's policy.
    pub(crate) fn new(
        ctx: &Context,
        options: &BTreeMap<String, String>,
        password: Option<&str>,
        limits: JobLimits,
    ) -> anyhow::Result<Self> {
        let mut args = Vec::new();
        let mut env = Vec::new();
        for (i, (k, v)) in options.iter().enumerate() {
            anyhow::ensure!(
                !k.is_empty() && !k.contains('=') && !k.contains('\0'),
                "option key {k:?}: a key is a non-empty name without '='"
            );
            anyhow::ensure!(!v.contains('\0'), "option {k}: the value contains NUL");
            args.extend(["--option-env".into(), format!("{k}={}", option_var(i))]);
            env.push((option_var(i), v.clone()));
        }
        if let Some(p) = password {
            anyhow::ensure!(
                !options.contains_key("password"),
                "the password is given twice: as an option and as the application password"
            );
            args.extend([
                "--option-env".into(),
                format!("password={}", super::PASSWORD_ENV),
            ]);
            env.push((super::PASSWORD_ENV.to_owned(), p.to_owned()));
        }
        if let Some(m) = limits.memory_mib {
            args.extend(["--memory-limit-mib".into(), m.to_string()]);
        }
        if let Some(d) = limits.deadline_secs {
            args.extend(["--deadline-secs".into(), d.to_string()]);
        }
        args.extend([
            "--policy-inline".into(),
            ctx.policy.text.clone(),
            "--policy-origin".into(),
            ctx.policy.origin.clone(),
        ]);
        args.extend(trust_args(&ctx.trust));
        Ok(Self { args, env })
    }

    /// The environment as `NAME=VALUE` (the guest agent's form).
    pub(crate) fn env_assignments(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// What a plan is asked for: the runner's `plan` arguments beyond the
/// plugin (`--operation`, `--select`, `--select-kind`, `--target`,
/// `--rename`).
pub(crate) type PlanArgs = Vec<String>;

/// Asks the plugin, run by this machine's copy of the container, for its
/// plan and checks it against the policy; the plan, or an error that names
/// the plugin, the need and the rule. Nothing is attached or run for the
/// job before this succeeds.
pub(crate) fn checked_plan(
    ctx: &Context,
    plugin: &str,
    access: &RunnerAccess,
    plan_args: &PlanArgs,
) -> anyhow::Result<Plan> {
    let runner = ctx.runner()?;
    let mut cmd = runner.command();
    cmd.args(["plan", "--plugin", plugin, "--check"])
        .args(plan_args)
        .args(&access.args)
        .envs(access.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped());
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", runner.dir.display()))?;
    if !out.status.success() {
        anyhow::bail!("{}", runner_error(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("the runner printed a plan that does not parse")
}

/// The runner's own error line, without its prefix, or its last lines.
pub(crate) fn runner_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("guest-runner: error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.trim().to_owned())
}
