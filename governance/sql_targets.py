"""Which tables an SQL text (MySQL dialect) writes: pure, parser-based, failing closed.

:func:`analyse` takes SQL text (one statement or several) and returns an :class:`Analysis`: the
tables it writes (lower-case, schema stripped) and whether any part of it is *opaque*: its
effects cannot be seen from the text (stored routine bodies, views, ``CALL``, dynamic SQL from a
variable, ``GRANT``). :func:`protected_writes` answers the guard's question with a fast path:
text that cannot name a protected table is never parsed.

The parser is sqlglot's MySQL dialect. Its gaps are closed here, before or instead of it:

* ``/*! ... */`` and ``/*M! ... */`` comments are *executed* by MySQL/MariaDB: unwrapped first;
* ``REPLACE`` parses as an opaque Command: read as the INSERT it is;
* ``RENAME TABLE a TO b``: both names are written;
* ``LOAD DATA|XML ... INTO TABLE t``: sqlglot cannot parse it; the target is read from tokens;
* ``CREATE TRIGGER ... ON t ... <body>``: writes ``t`` and whatever the body writes;
* ``PREPARE s FROM '<sql>'`` / ``EXECUTE IMMEDIATE '<sql>'``: the literal is analysed; from a
  variable, opaque;
* multi-table ``UPDATE`` and ``DELETE``: sqlglot gives aliases; they are resolved to tables (an
  unqualified SET column in a multi-table UPDATE counts against every table: fail closed);
* ``LOCK TABLES t WRITE``, ``OPTIMIZE``/``REPAIR``/``ANALYZE TABLE t``: writes ``t``.

What no parser can see: a routine called with ``CALL``, or SQL assembled in variables
(``CONCAT('audit', '_logs')``). Database grants are the defence there (``governance.grants``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import SqlglotError

from governance.errors import UnparseableSQL

_DIALECT = MySQL()
_VERSIONED_COMMENT = re.compile(r"/\*M?!\d*(.*?)\*/", re.DOTALL)
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|/\*.*?\*/|(?:--\s|#)[^\n]*(?:\n|\Z))*", re.DOTALL)
_READS = (exp.Select, exp.SetOperation, exp.Describe, exp.Show, exp.Set, exp.Use)
_PARSED_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.TruncateTable, exp.Alter, exp.Drop,
                  exp.Create)
# sqlglot logs a warning each time it falls back to a Command; we handle those forms ourselves.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Analysis:
    """What an SQL text writes; ``opaque`` when some effect cannot be seen from the text."""

    writes: frozenset[str]
    opaque: bool = False

    def __or__(self, other: Analysis) -> Analysis:
        return Analysis(self.writes | other.writes, self.opaque or other.opaque)


NOTHING = Analysis(frozenset())
OPAQUE = Analysis(frozenset(), opaque=True)


def mentions(sql: str, names: Iterable[str]) -> bool:
    """True if ``sql`` could name one of ``names`` (case-insensitive substring: the fast path)."""
    lowered = sql.lower()
    return any(name in lowered for name in names)


def protected_writes(sql: str, protected: frozenset[str]) -> frozenset[str]:
    """The protected tables ``sql`` writes, or would be refused for (fail closed).

    Text that does not mention a protected name is not parsed (the fast path). Text that
    mentions one and cannot be parsed, or is opaque, counts as writing every protected name it
    mentions.
    """
    lowered = sql.lower()
    named = frozenset(name for name in protected if name in lowered)
    if not named:
        return frozenset()
    try:
        analysis = analyse(sql)
    except UnparseableSQL:
        return named
    hit = named & analysis.writes
    return named if analysis.opaque else hit


def written_tables(sql: str) -> frozenset[str]:
    """The tables ``sql`` writes (lower-case, without schema); raises :class:`UnparseableSQL`."""
    return analyse(sql).writes


# DBAPI placeholders as drivers receive them (PyMySQL's %s and %(name)s, sqlite3's ? and :name):
# values to the parser, which does not know the pyformat ones.
_PLACEHOLDER = re.compile(r"%\([A-Za-z_][\w]*\)s|%s")


def analyse(sql: str) -> Analysis:
    """What every statement in ``sql`` writes, together; raises :class:`UnparseableSQL`."""
    result = NOTHING
    if "%" in sql:
        sql = _PLACEHOLDER.sub("0", sql)
    for statement in split_statements(unwrap_versioned_comments(sql)):
        result = result | _analyse_statement(statement)
    return result


def unwrap_versioned_comments(sql: str) -> str:
    """``/*!40000 X */`` and ``/*M!100100 X */`` run X on MySQL/MariaDB: keep X, drop the marks."""
    return _VERSIONED_COMMENT.sub(lambda m: f" {m.group(1)} ", sql) if "/*" in sql else sql


def _tokens(sql: str) -> list[Token]:
    try:
        return list(_DIALECT.tokenize(sql))
    except SqlglotError as exc:
        raise UnparseableSQL(f"cannot tokenize: {type(exc).__name__}") from None


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, split at semicolons outside strings and comments."""
    statements, start = [], 0
    for token in _tokens(sql):
        if token.token_type == TokenType.SEMICOLON:
            statements.append(sql[start:token.start])
            start = token.end + 1
    statements.append(sql[start:])
    return [s for s in (_LEADING_COMMENTS.sub("", s).strip() for s in statements) if s]


def _table_name(table: exp.Table) -> str:
    return table.name.lower()


def _words(statement: str, count: int) -> list[str]:
    return [w.upper() for w in statement.split(None, count)[:count]]


def _analyse_statement(statement: str) -> Analysis:
    first, *rest = _words(statement, 3) + ["", ""]
    if first == "REPLACE":
        return _analyse_statement("INSERT" + statement[len("REPLACE"):])
    if first == "RENAME":
        return Analysis(frozenset(_names_in(statement.split(None, 2)[2] if rest[0] == "TABLE" else "")))
    if first == "LOAD":
        return _load_data(statement)
    if first == "LOCK":
        return _lock_tables(statement)
    if first in {"OPTIMIZE", "REPAIR", "ANALYZE"}:
        tables = re.sub(r"(?is)^\w+\s+(?:NO_WRITE_TO_BINLOG\s+|LOCAL\s+)?TABLES?\s+", "", statement)
        return Analysis(frozenset(_names_in(tables)))
    if first in {"CHECK", "CHECKSUM", "HANDLER", "EXPLAIN", "DESCRIBE", "DESC", "SHOW", "HELP"}:
        return NOTHING
    if first == "PREPARE":
        return _dynamic(statement, r"(?is)^PREPARE\s+\S+\s+FROM\s+")
    if first == "EXECUTE":
        if rest[0] == "IMMEDIATE":
            return _dynamic(statement, r"(?is)^EXECUTE\s+IMMEDIATE\s+")
        return OPAQUE  # EXECUTE stmt: its text was checked when it was PREPAREd
    if first in {"CALL", "GRANT", "REVOKE", "DO"}:
        return OPAQUE
    if first == "CREATE":
        creation = re.match(
            r"(?is)^CREATE\s+(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?"
            r"(?:SQL\s+SECURITY\s+\w+\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?(\w+)", statement)
        kind = creation.group(1).upper() if creation else ""
        if kind == "TRIGGER":
            return _trigger(statement)
        if kind in {"PROCEDURE", "FUNCTION", "EVENT", "VIEW"}:
            return OPAQUE  # a body or a view can write (or launder writes) later
    return _parsed(statement)


# MySQL/MariaDB built-ins that sqlglot leaves as Anonymous calls. None writes a table, and a
# stored function cannot take a built-in's name, so any other name may be a routine: opaque.
BUILTIN_FUNCTIONS = frozenset("""
    NOW SYSDATE CURDATE CURTIME UTC_DATE UTC_TIME UTC_TIMESTAMP LOCALTIME LOCALTIMESTAMP
    UNIX_TIMESTAMP FROM_UNIXTIME DATE_FORMAT TIME_FORMAT STR_TO_DATE TO_DAYS FROM_DAYS
    TO_SECONDS DATEDIFF TIMEDIFF TIMESTAMPDIFF TIMESTAMPADD ADDDATE SUBDATE ADDTIME SUBTIME
    PERIOD_ADD PERIOD_DIFF MAKEDATE MAKETIME SEC_TO_TIME TIME_TO_SEC CONVERT_TZ WEEKDAY
    WEEKOFYEAR YEARWEEK DAYNAME MONTHNAME DAYOFYEAR LAST_DAY MICROSECOND JSON_VALID JSON_TYPE
    JSON_KEYS JSON_LENGTH JSON_DEPTH JSON_CONTAINS JSON_CONTAINS_PATH JSON_SEARCH JSON_UNQUOTE
    JSON_QUOTE JSON_SET JSON_INSERT JSON_REPLACE JSON_REMOVE JSON_MERGE JSON_MERGE_PATCH
    JSON_MERGE_PRESERVE JSON_ARRAY_APPEND JSON_ARRAY_INSERT JSON_PRETTY JSON_COMPACT
    JSON_DETAILED JSON_VALUE JSON_QUERY JSON_EXISTS JSON_OVERLAPS JSON_TABLE IFNULL NULLIF
    ISNULL CONCAT_WS FIND_IN_SET FIELD ELT INSTR LOCATE POSITION LPAD RPAD REPEAT REVERSE SPACE
    SUBSTRING_INDEX MID LCASE UCASE OCT BIN ORD CHAR_LENGTH CHARACTER_LENGTH OCTET_LENGTH
    BIT_LENGTH FORMAT QUOTE SOUNDEX INSERT EXPORT_SET MAKE_SET INET_ATON INET_NTOA INET6_ATON
    INET6_NTOA IS_IPV4 IS_IPV6 UUID UUID_SHORT SYS_GUID LAST_INSERT_ID FOUND_ROWS ROW_COUNT
    DATABASE SCHEMA USER CURRENT_USER SESSION_USER SYSTEM_USER CURRENT_ROLE VERSION
    CONNECTION_ID CHARSET COLLATION COERCIBILITY BENCHMARK SLEEP GET_LOCK RELEASE_LOCK
    RELEASE_ALL_LOCKS IS_FREE_LOCK IS_USED_LOCK MASTER_POS_WAIT MD5 SHA SHA1 SHA2 CRC32 HEX
    UNHEX TO_BASE64 FROM_BASE64 COMPRESS UNCOMPRESS UNCOMPRESSED_LENGTH RANDOM_BYTES AES_ENCRYPT
    AES_DECRYPT PASSWORD OLD_PASSWORD RAND ROUND TRUNCATE CEILING CEIL FLOOR MOD POW POWER SQRT
    SIGN ABS LOG LOG2 LOG10 LN EXP PI DEGREES RADIANS CONV GREATEST LEAST INTERVAL BIT_COUNT
    GROUP_CONCAT STD STDDEV STDDEV_POP STDDEV_SAMP VAR_POP VAR_SAMP VARIANCE BIT_AND BIT_OR
    BIT_XOR ANY_VALUE GROUPING ROW_NUMBER RANK DENSE_RANK PERCENT_RANK CUME_DIST NTILE LAG LEAD
    FIRST_VALUE LAST_VALUE NTH_VALUE VALUES DEFAULT NAME_CONST WEIGHT_STRING REGEXP_LIKE
    REGEXP_INSTR REGEXP_REPLACE REGEXP_SUBSTR NEXTVAL LASTVAL SETVAL
""".split())
_DML_MODIFIERS = re.compile(
    r"(?i)^(INSERT|UPDATE|DELETE)((?:\s+(?:LOW_PRIORITY|HIGH_PRIORITY|DELAYED|QUICK|IGNORE))+)\b")
_INTO_FILE = re.compile(
    r"(?is)\s+INTO\s+(?:OUTFILE|DUMPFILE)\s+(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\").*\Z")


def _parsed(statement: str) -> Analysis:
    # sqlglot reads DELETE LOW_PRIORITY QUICK FROM t as a multi-table DELETE of "low_priority"
    # and "quick", and cannot parse SELECT ... INTO OUTFILE: neither changes which tables are
    # written, so both are removed before parsing.
    statement = _DML_MODIFIERS.sub(r"\1", statement)
    if statement[:6].upper() == "SELECT":
        statement = _INTO_FILE.sub("", statement)
    try:
        tree = sqlglot.parse_one(statement, read="mysql")
    except SqlglotError:
        raise UnparseableSQL("sqlglot could not parse the statement") from None
    if tree is None:
        return NOTHING
    if any(f.name.upper() not in BUILTIN_FUNCTIONS for f in tree.find_all(exp.Anonymous)):
        return OPAQUE  # a stored function can write anything, like CALL
    if isinstance(tree, _READS):
        return NOTHING
    if isinstance(tree, exp.Insert):
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        return Analysis(frozenset({_table_name(target)} if isinstance(target, exp.Table) else ()),
                        opaque=not isinstance(target, exp.Table))
    if isinstance(tree, exp.Update):
        return Analysis(_update_targets(tree))
    if isinstance(tree, exp.Delete):
        return Analysis(_delete_targets(tree))
    if isinstance(tree, exp.Create):
        # CREATE TABLE t [AS SELECT | LIKE]: writes t; the tables it reads are not written.
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if isinstance(target, exp.Table):
            return Analysis(frozenset({_table_name(target)}))
        return Analysis(frozenset(_table_name(t) for t in tree.find_all(exp.Table)))
    if isinstance(tree, (exp.TruncateTable, exp.Alter, exp.Drop)):
        return Analysis(frozenset(_table_name(t) for t in tree.find_all(exp.Table)))
    return OPAQUE  # a Command fallback or a statement kind we do not model


def _aliases(tables: Iterable[exp.Table]) -> dict[str, str]:
    mapping = {}
    for table in tables:
        name = _table_name(table)
        mapping[name] = name
        if table.alias:
            mapping[table.alias.lower()] = name
    return mapping


def _referenced_tables(root: exp.Expression | None) -> list[exp.Table]:
    """Tables named by a FROM/UPDATE/USING clause and its joins (not those in subqueries)."""
    if root is None:
        return []
    found = [root] if isinstance(root, exp.Table) else []
    for join in root.args.get("joins") or []:
        found.extend(_referenced_tables(join.this))
    return found


def _update_targets(tree: exp.Update) -> frozenset[str]:
    tables = _referenced_tables(tree.this)
    for extra in (tree.args.get("from_"), tree.args.get("from")):
        if isinstance(extra, exp.From):
            tables.extend(_referenced_tables(extra.this))
    aliases = _aliases(tables)
    if len(tables) == 1:
        return frozenset({_table_name(tables[0])})
    targets = set()
    for assignment in tree.expressions:
        column = assignment.this
        qualifier = column.table.lower() if isinstance(column, exp.Column) else ""
        if qualifier in aliases:
            targets.add(aliases[qualifier])
        else:  # unqualified in a multi-table UPDATE: any of them may be written
            targets.update(aliases.values())
    return frozenset(targets)


def _delete_targets(tree: exp.Delete) -> frozenset[str]:
    sources = _referenced_tables(tree.this)
    for using in tree.args.get("using") or []:
        sources.extend(_referenced_tables(using))
    aliases = _aliases(sources)
    targets = tree.args.get("tables") or ([tree.this] if isinstance(tree.this, exp.Table) else [])
    written = set()
    for target in targets:
        name = _table_name(target) if isinstance(target, exp.Table) else ""
        if sources and name not in aliases:
            return frozenset(aliases.values()) | {name}  # a target we cannot place: fail closed
        written.add(aliases.get(name, name))
    return frozenset(written)


_IDENT = r"(?:`(?:[^`]|``)+`|\"(?:[^\"]|\"\")+\"|[\w$]+)"
_QUALIFIED = re.compile(rf"({_IDENT})(?:\s*\.\s*({_IDENT}))?")


def _bare(identifier: str) -> str:
    if identifier[:1] in "`\"":
        identifier = identifier[1:-1]
    return identifier.lower()


def _names_in(text: str) -> list[str]:
    """Table names (schema stripped) of a ``a TO b, c TO d`` or ``t1, t2`` list."""
    names = []
    for match in _QUALIFIED.finditer(text):
        if match.group(1).upper() in {"TO", "TABLE", "TABLES"}:
            continue
        names.append(_bare(match.group(2) or match.group(1)))
    return names


def _load_data(statement: str) -> Analysis:
    match = re.search(rf"(?is)\bINTO\s+TABLE\s+{_QUALIFIED.pattern}", statement)
    if match is None:
        raise UnparseableSQL("LOAD statement without INTO TABLE")
    return Analysis(frozenset({_bare(match.group(2) or match.group(1))}))


def _lock_tables(statement: str) -> Analysis:
    body = re.sub(r"(?is)^LOCK\s+TABLES?\s+", "", statement)
    written = set()
    for item in body.split(","):
        names = _names_in(re.split(r"(?i)\s+(?:AS\s+\S+\s+)?(?:READ|WRITE|LOW_PRIORITY)\b", item)[0])
        if re.search(r"(?i)\bWRITE\b", item) and names:
            written.add(names[0])
    return Analysis(frozenset(written))


def _trigger(statement: str) -> Analysis:
    match = re.search(rf"(?is)\bON\s+{_QUALIFIED.pattern}\s+FOR\s+EACH\s+ROW\s+"
                      r"(?:(?:FOLLOWS|PRECEDES)\s+\S+\s+)?(.*)\Z", statement)
    if match is None:
        raise UnparseableSQL("CREATE TRIGGER without ON <table> FOR EACH ROW")
    table = _bare(match.group(2) or match.group(1))
    body = match.group(3).strip()
    if re.match(r"(?i)BEGIN\b", body):
        body = re.sub(r"(?is)^BEGIN\b|\bEND\s*$", "", body)
    return Analysis(frozenset({table})) | analyse(body)


def _dynamic(statement: str, prefix: str) -> Analysis:
    source = re.sub(prefix, "", statement).strip()
    literal = re.fullmatch(r"(?s)'((?:[^'\\]|\\.|'')*)'|\"((?:[^\"\\]|\\.|\"\")*)\"", source)
    if literal is None:
        return OPAQUE  # FROM @variable: the text is not here to see
    text = literal.group(1) if literal.group(1) is not None else literal.group(2)
    return analyse(re.sub(r"\\(.)", r"\1", text.replace("''", "'")))
