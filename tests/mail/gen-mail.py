#!/usr/bin/env python3
"""Realistic mail for the mail tests, delivered over LMTP into a Dovecot
started by dovecot.sh (which enables lmtp_save_to_detail_mailbox: the
detail of USER+FOLDER@... names the folder).

  gen-mail.py DIR USER [--folders 20] [--messages 2000] [--seed 1] [--start 0]

Varied sizes (a few hundred bytes to ~1 MB), attachments (base64), plain
and HTML parts, non-ASCII subjects (RFC 2047 UTF-8 and ISO-8859-1) and
senders; afterwards flags are set on a share of each folder with doveadm.
Prints the number of messages delivered.
"""
import argparse, random, smtplib, subprocess, sys
from email.message import EmailMessage
from email.headerregistry import Address
from email.utils import format_datetime, make_msgid
import datetime

SUBJECTS = ["Quarterly report", "Überweisung bestätigt", "Réunion de l'équipe", "Заказ №", "会议纪要",
            "Invoice", "Re: lunch?", "Fwd: contract draft", "Ça marche", "Ärger mit dem Drucker", "Ελληνικά"]
NAMES = ["Jörg Müller", "Zoë Dubois", "Алексей", "Bob", "Ana Núñez", "李雷"]

def folders(n):
    base = ["Archive", "Archive/2023", "Archive/2024", "Projects", "Projects/Alpha", "Projects/Beta",
            "Receipts", "Travel", "Family", "Newsletters", "Work", "Work/HR", "Work/Legal", "Sent", "Drafts",
            "Trash", "Junk", "Lists", "Lists/dev", "Old"]
    return ["INBOX"] + base[: max(0, n - 1)]

def message(rng, i, seed):
    m = EmailMessage()
    subj = f"{rng.choice(SUBJECTS)} {seed}-{i}"
    m["Subject"] = subj
    name = rng.choice(NAMES)
    m["From"] = Address(name, "sender%d" % rng.randrange(50), "example.org")
    m["To"] = "user@example.org"
    m["Date"] = format_datetime(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=i * 37 + seed))
    m["Message-ID"] = make_msgid(idstring=f"{seed}.{i}", domain="gen.example.org")
    size = int(rng.choice([200, 800, 2000, 6000, 20000, 60000]) * rng.uniform(0.5, 1.5))
    body = " ".join(rng.choice(["lorem", "ipsum", "dolor", "grüße", "naïve", "données", "sit", "amet"]) for _ in range(size // 6))
    m.set_content(body + "\n")
    if i % 3 == 0:
        m.add_alternative(f"<html><body><p>{body[:2000]}</p></body></html>\n", subtype="html")
    if i % 10 == 0:
        blob = rng.randbytes(rng.choice([10_000, 50_000, 200_000, 700_000]))
        m.add_attachment(blob, maintype="application", subtype="octet-stream", filename=f"anhang-{i}.bin")
    return m

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir"); ap.add_argument("user")
    ap.add_argument("--folders", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="deliver everything into this folder")
    a = ap.parse_args()
    env = dict(l.strip().split("=", 1) for l in open(f"{a.dir}/env") if "=" in l)
    rng = random.Random(a.seed)
    fl = [a.only] if a.only else folders(a.folders)
    lmtp = smtplib.LMTP("127.0.0.1", int(env["LMTP_PORT"]))
    for i in range(a.messages):
        f = fl[i % len(fl)]
        rcpt = a.user if f == "INBOX" else f"{a.user}+{f}"
        lmtp.sendmail("gen@example.org", [rcpt], message(rng, i, a.seed).as_bytes())
    lmtp.quit()
    if not a.only:
        da = ["doveadm", "-c", env["CONF"]]
        for f in fl[: a.messages]:  # the folders that got mail
            subprocess.run(da + ["mailbox", "subscribe", "-u", a.user, f], check=False)
            subprocess.run(da + ["flags", "add", "-u", a.user, "\\Seen", "mailbox", f, "uid", "1:20"], check=True)
            subprocess.run(da + ["flags", "add", "-u", a.user, "\\Flagged $Label1", "mailbox", f, "uid", "3:6"], check=True)
            subprocess.run(da + ["flags", "add", "-u", a.user, "\\Answered", "mailbox", f, "uid", "8"], check=True)
    print(a.messages)

if __name__ == "__main__":
    main()
