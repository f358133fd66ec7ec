"""Credentials inside text: ``password=...`` in a message, ``curl -u user:pass``, connection
strings, credential headers, Kubernetes Secret manifests.

Pure. A name followed by ``=``, ``:``, ``:=`` or ``=>`` (quoted or not, as in ``.env`` files, YAML,
JSON or PHP ``print_r`` inside a string) is a credential when the policy's key vocabulary
(:class:`governance.key_names.KeyClassifier`) would mask a dict key of that name. Only the value is
reported, so the text stays readable: ``password=[masked]``.

Values that hold nothing are left alone: placeholders (``***``, ``<password>``, ``${DB_PASS}``,
``%s``, ``[redacted]``), flags and nulls (``YES`` in MySQL's ``(using password: YES)``), and short
plain words (``token: expired``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from governance.key_names import DENY, KeyClassifier

# name, optional closing quote or bracket (JSON, print_r), separator, optional opening quote
_PAIR = re.compile(
    r"""(?<![A-Za-z0-9_])(?<!\$\{)(?<!\{\{)(?P<key>[A-Za-z_][A-Za-z0-9_.-]{0,63}?)["']?\]?[ \t]*"""
    r"""(?P<sep>=>|:=|=|:)[ \t]*(?P<open>\[\]string\{|\[)?(?P<quote>\\?["']|)""")
# An unquoted value ends at white space, a quote, '<', '>', ';' or ',', or at '&' that starts the
# next query parameter (a password may hold '&': "Tr0ub4dor&3").
_BARE = re.compile(r"(?:[^\s\"'<>;,&]|&(?![A-Za-z_][A-Za-z0-9_.\[\]-]*=))+")
_LINE_REST = re.compile(r"[^\r\n\"']+")
# "Authorization: Bearer xyz": the scheme word is not the secret, the token after it is.
_SCHEME = re.compile(r"(?i)(?:bearer|basic|token|digest|apikey|api-key|key|bot|ssws|sso-key|"
                     r"otoken|negotiate|ntlm)[ \t]+")
_PLACEHOLDER = re.compile(
    r"(?i)[*x.?#_-]{2,}|…|\[[^\]]*\]|<[^>]*>|\{\{?[^}]*\}\}?|\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|"
    r"%[sd]|%\([a-z_]+\)s|%[^%\s]+%|:[a-z_]+|\?|null|none|nil|true|false|yes|no|on|off|undefined|n/?a|"
    r"required|optional|empty|redacted|masked|hidden|filtered|removed|omitted|not ?set|unset|"
    # the start of a template ("${DB_PASSWORD:?set it}") or a reference to where the value lives
    r"(?:\$\{|\{\{|%env\(|<).*|"
    r"(?:var|local|locals|env|process\.env|os\.environ|settings|config|secrets|vars|params|data)"
    r"[.\[][A-Za-z_][\w.\]'\"\[]*|"
    # a function that reads it: getenv('DB_PASSWORD'), System.fetch_env!("KEY"), env("X")
    r"[A-Za-z_][\w.:\\]*!?\(.*|"
    # a name of two or three lower-case words: the name of a Secret or a key, not its value
    r"[a-z]+(?:[-_][a-z]+){1,2}")
_WORD = re.compile(r"[A-Za-z][a-z]{0,11}")  # "expired", "Invalid": a word, not a password
_TRAILING = ".)]}"
MIN_VALUE = 4
_MAX_VALUE = 512
# curl -u user:pass, --user, --proxy-user; only the password is masked.
# Also as a list of arguments in a repr: ['curl', '-u', 'user:pass'].
_CURL_USER = re.compile(
    r"""(?:^|[\s\[,'"])(?:-u|-U|--user|--proxy-user)(?:['"]?[ \t]*,[ \t]*['"]|[ \t]+['"]?|=['"]?)"""
    r"""[^\s:"']*:(?P<value>[^\s"']+)""")
# "--access-key-secret VALUE", "--password VALUE": a denied option name, then its value.
_OPTION = re.compile(r"""(?:^|\s)--?(?P<key>[A-Za-z][A-Za-z0-9_-]{1,63})[ \t]+(?P<quote>["']?)"""
                     r"""(?P<value>[^\s"'-][^\s"']*)""")
# mysql -psecret / -p'secret' (the password is glued to -p); only on a mysql client command line.
_MYSQL_P = re.compile(
    r"""(?i)\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\r\n]*?[ \t]-p"""
    r"""(?P<quote>["']?)(?P<value>[^\s"']{4,})""")
_K8S_KIND = re.compile(r"""["']?kind["']?\s*:\s*["']?Secret\b""")
_K8S_YAML_BLOCK = re.compile(r"(?m)^(?P<indent>[ \t]*)(?:data|stringData):[ \t]*\r?\n")
_K8S_YAML_ITEM = re.compile(r"(?P<indent>[ \t]+)[A-Za-z0-9_.-]+:[ \t]*(?P<value>\S.*?)[ \t]*$")
_K8S_JSON_BLOCK = re.compile(r"""["'](?:data|stringData)["']\s*:\s*\{(?P<body>[^{}]*)\}""")
_K8S_JSON_ITEM = re.compile(r"""["'][^"']+["']\s*:\s*["'](?P<value>[^"']+)["']""")

# RE2 gates (superset patterns) for the one-pass set in governance.detectors.
CURL_GATE = r"""(?:^|[\s\[,'"])(?:-u|-U|--user|--proxy-user)['"\s=,]"""
MYSQL_GATE = r"(?i)(?:mysql|mariadb)[^\r\n]*[ \t]-p"
KUBERNETES_GATE = r"kind[\"']?\s*:\s*[\"']?Secret"


def _denied_words(keys: KeyClassifier) -> str:
    """An RE2 alternation of a word of every denied name (:meth:`KeyClassifier.gate_words`)."""
    return "|".join(re.escape(word) for word in keys.gate_words())


def option_gate(keys: KeyClassifier) -> str:
    """RE2 pattern that matches wherever :func:`option_values` can: ``-`` and a denied word."""
    return rf"(?i)-[A-Za-z0-9_-]{{0,63}}(?:{_denied_words(keys)})"


def pair_gate(keys: KeyClassifier) -> str:
    """RE2 pattern that matches wherever :func:`credential_pairs` can find a pair: a word of a
    denied name, then name characters, an optional quote or bracket, and a separator."""
    return rf"(?i)(?:{_denied_words(keys)})[A-Za-z0-9_.-]{{0,63}}[\"']?\]?[ \t]*[:=]"


def is_placeholder(value: str) -> bool:
    """True for values that hold no secret: masks, template variables, flags, plain words."""
    return len(value) < MIN_VALUE or bool(_PLACEHOLDER.fullmatch(value) or _WORD.fullmatch(value))


def credential_pairs(text: str, keys: KeyClassifier) -> Iterator[tuple[int, int]]:
    """Spans of the values of ``name=value`` pairs whose name the policy denies."""
    for match in _PAIR.finditer(text):
        if keys.kind(match.group("key")) != DENY:
            continue
        if match.group("sep") == ":" and (text.startswith(":", match.end("sep")) or (
                match.group("quote") and text[match.start("sep") - 1:match.start("sep")] == " ")):
            continue  # SQL casts ("password"::varchar) and psql variables (PASSWORD :'pw')
        start, quote = match.end(), match.group("quote")
        if quote:
            end = text.find(quote, start, start + _MAX_VALUE)
            if end < 0 or "\n" in text[start:end]:
                continue
            bare_end = end
        else:
            scheme = _SCHEME.match(text, start)
            if scheme is not None:
                start = scheme.end()
            rest = _LINE_REST if "cookie" in match.group("key").lower() else _BARE
            bare = rest.match(text, start)
            if bare is None:
                continue
            end = bare_end = bare.end()
            while end > start and text[end - 1] in _TRAILING:
                end -= 1
        value = text[start:end].strip()
        if not is_placeholder(value) and not is_placeholder(text[start:bare_end].strip()):
            yield start, end


def option_values(text: str, keys: KeyClassifier) -> Iterator[tuple[int, int]]:
    """Spans of the values of command-line options with a denied name: ``--password VALUE``."""
    for match in _OPTION.finditer(text):
        value = match.group("value")
        if keys.kind(match.group("key")) == DENY and not is_placeholder(value):
            yield match.span("value")


def curl_passwords(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the passwords of ``curl -u user:pass`` (and ``--user``, ``--proxy-user``)."""
    return _command_line(_CURL_USER, text)


def mysql_passwords(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the passwords glued to ``-p`` on a mysql client command line."""
    return _command_line(_MYSQL_P, text)


def _command_line(pattern: re.Pattern[str], text: str) -> Iterator[tuple[int, int]]:
    for match in pattern.finditer(text):
        if not is_placeholder(match.group("value")):
            yield match.span("value")


def kubernetes_secret_values(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the values under ``data:`` and ``stringData:`` of a Kubernetes Secret manifest
    (YAML or JSON) held in a string."""
    if not _K8S_KIND.search(text):
        return
    for block in _K8S_YAML_BLOCK.finditer(text):
        indent = len(block.group("indent"))
        position = block.end()
        while position < len(text):
            line_end = text.find("\n", position)
            line_end = len(text) if line_end < 0 else line_end
            item = _K8S_YAML_ITEM.match(text, position, line_end)
            if item is None or len(item.group("indent")) <= indent:
                break
            yield item.span("value")
            position = line_end + 1
    for block in _K8S_JSON_BLOCK.finditer(text):
        offset = block.start("body")
        for item in _K8S_JSON_ITEM.finditer(block.group("body")):
            yield offset + item.start("value"), offset + item.end("value")
