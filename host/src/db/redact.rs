//! A PostgreSQL URL as it may be shown: in errors and logs its password
//! (`user:PASSWORD@`, `?password=`) is replaced by `***`, so that a
//! `--state-db` with a password in it never leaks through a message.

/// `url` with any password in it replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: nothing can be told apart, show nothing of it.
        return "***".into();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, hosts)) => match user.split_once(':') {
            Some((name, _password)) => format!("{name}:***@{hosts}"),
            None => format!("{user}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgresql://attache:s3cret@db.example:5432/state"),
            "postgresql://attache:***@db.example:5432/state"
        );
        assert_eq!(
            redact("postgres://a:p@ss:w@rd@h1,h2/db?sslmode=disable&password=x&application_name=y"),
            "postgres://a:***@h1,h2/db?sslmode=disable&password=***&application_name=y"
        );
        assert_eq!(
            redact("postgresql://attache@127.0.0.1/state"),
            "postgresql://attache@127.0.0.1/state"
        );
        assert_eq!(redact("postgresql://h"), "postgresql://h");
        assert_eq!(redact("host=h password=x"), "***");
    }
}
