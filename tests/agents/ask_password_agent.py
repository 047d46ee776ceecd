#!/usr/bin/env python3
"""A password agent for tests, speaking the systemd ask-password protocol
(https://systemd.io/PASSWORD_AGENTS/) from its own process, as
systemd-tty-ask-password-agent or plymouth would.

Usage: ask_password_agent.py DIR ANSWERS LOG

Watches DIR for ask.* files; answers each new question with the next line
of the file ANSWERS ("+line" on the question's datagram socket), or cancels
("-") once the lines run out. Appends each question's Message= to LOG (never
an answer). Runs until killed, or until the process that started it exits
(so a shell can start it beside the command it `exec`s).
"""
import configparser
import os
import socket
import sys
import time


def main():
    ask_dir, answers_path, log_path = sys.argv[1:4]
    with open(answers_path, encoding="utf-8") as f:
        answers = f.read().splitlines()
    seen = set()
    parent = os.getppid()
    while os.getppid() == parent:
        for name in sorted(os.listdir(ask_dir)) if os.path.isdir(ask_dir) else []:
            if not name.startswith("ask.") or name in seen:
                continue
            seen.add(name)
            ini = configparser.ConfigParser(interpolation=None)
            try:
                ini.read(os.path.join(ask_dir, name), encoding="utf-8")
                ask = ini["Ask"]
            except (configparser.Error, KeyError, OSError):
                continue
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(ask.get("Message", "") + "\n")
            reply = ("+" + answers.pop(0)) if answers else "-"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.sendto(reply.encode("utf-8"), ask["Socket"])
            except OSError:
                pass
            finally:
                sock.close()
        time.sleep(0.02)


if __name__ == "__main__":
    main()
