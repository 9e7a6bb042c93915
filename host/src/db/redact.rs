//! A PostgreSQL connection string as it may be shown: in errors and logs
//! its password (a URL's `user:PASSWORD@` and `?password=`, the keyword
//! form's `password=`) is replaced by `***`, so that a `--state-db` with a
//! password in it never leaks through a message. Nothing here depends on
//! the URL's scheme.

/// `url` with any password in it replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_keywords(url);
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

/// The keyword form (`host=H port=P password=X`), its password replaced.
/// A quoted value may hold spaces, so where one is, nothing is shown.
fn redact_keywords(s: &str) -> String {
    if s.contains(['\'', '\\']) || !s.contains('=') {
        return "***".into();
    }
    s.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        // Any scheme: the redaction reads only the URL's parts.
        assert_eq!(
            redact("db://attache:s3cret@db.example:5432/state"),
            "db://attache:***@db.example:5432/state"
        );
        assert_eq!(
            redact("db://a:p@ss:w@rd@h1,h2/db?sslmode=disable&password=x&application_name=y"),
            "db://a:***@h1,h2/db?sslmode=disable&password=***&application_name=y"
        );
        assert_eq!(
            redact("db://attache@127.0.0.1/state"),
            "db://attache@127.0.0.1/state"
        );
        assert_eq!(redact("db://h"), "db://h");
        assert_eq!(
            redact("host=h port=5 PASSWORD=x dbname=d"),
            "host=h port=5 PASSWORD=*** dbname=d"
        );
        assert_eq!(redact("host=h password='a b'"), "***");
        assert_eq!(redact("just text"), "***");
    }
}
