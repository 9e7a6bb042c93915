#!/usr/bin/env bash
# A throwaway Dovecot 2.3 for the mail tests: its own base directory, IMAP and
# LMTP on 127.0.0.1 at free ports, a passwd-file user database, a static
# userdb (uid 65534), Maildir storage with "/" as hierarchy separator, all in
# DIR. Nothing of the machine's own mail setup is read or touched.
#
#   dovecot.sh start DIR [USER...]   starts it; prints the IMAP port; writes
#                                    DIR/env (PORT LMTP_PORT PW CONF) for `.`
#   dovecot.sh stop DIR              stops it
#   dovecot.sh doveadm DIR ARGS...   doveadm on this instance
#
# Every user has the password in DIR/env (PW). Installs Debian's
# dovecot-imapd and dovecot-lmtpd when missing (needs root).
set -euo pipefail

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|doveadm DIR ..." >&2; exit 2; }
dir=$(cd "$dir" && pwd)
shift 2

case $cmd in
start)
    if ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/imap ] || [ ! -x /usr/lib/dovecot/lmtp ]; then
        echo "installing dovecot-imapd dovecot-lmtpd" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd dovecot-lmtpd >/dev/null
    fi
    users=("$@"); [ ${#users[@]} -gt 0 ] || users=(alice bob)
    port=$(free_port); lmtp=$(free_port)
    pw="pw-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    # The mail store and every parent must be traversable by uid 65534.
    chmod 755 "$dir"
    # (`test -x` would ask for root, who may always enter: look at the bits.)
    d=$dir; while [ "$d" != / ]; do
        d=$(dirname "$d")
        [ -n "$(find "$d" -maxdepth 0 -perm -o+x)" ] || chmod o+x "$d"
    done
    mkdir -p "$dir/run" "$dir/state" "$dir/mail"
    chown 65534:65534 "$dir/mail"
    : >"$dir/passwd"
    for u in "${users[@]}"; do printf '%s:{PLAIN}%s\n' "$u" "$pw" >>"$dir/passwd"; done
    chmod 644 "$dir/passwd"
    cat >"$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 100
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$dir/mail/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp
  }
}
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
lda_mailbox_autocreate = yes
lda_mailbox_autosubscribe = yes
protocol imap {
  mail_plugins =
}
CONF
    printf 'PORT=%s\nLMTP_PORT=%s\nPW=%s\nCONF=%s\n' "$port" "$lmtp" "$pw" "$dir/dovecot.conf" >"$dir/env"
    # The daemon must not keep the caller's stdout or stderr open (a caller
    # reading them to their end would wait for it to exit).
    dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>"$dir/dovecot.stderr" \
        || { cat "$dir/dovecot.stderr" >&2; exit 1; }
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$dir/dovecot.log" >&2; exit 1; }
    echo "$port"
    ;;
stop)
    [ -f "$dir/dovecot.conf" ] && doveadm -c "$dir/dovecot.conf" stop >/dev/null 2>&1 || true
    ;;
doveadm)
    exec doveadm -c "$dir/dovecot.conf" "$@"
    ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
