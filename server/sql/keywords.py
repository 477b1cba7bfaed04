"""The SQL words the fingerprint and the classifier know, grouped by what they do.

These sets are vocabulary only: which words are upper-cased in a
fingerprint, which start a statement of a kind, which end a table list.
They are not a grammar; do not use them to decide whether text is valid SQL
(the backends accept many words not listed here, read as identifiers).
"""

from __future__ import annotations

__all__ = [
    "ALIAS_STOP",
    "CLAUSE_END",
    "DDL_WORDS",
    "DML_KINDS",
    "FUNCTION_KEYWORDS",
    "INSERT_MODIFIERS",
    "KEYWORDS",
    "KIND_SEVERITY",
    "NOT_A_CALL",
    "STRUCTURAL_KEYWORDS",
    "SUBQUERY_START",
    "TABLE_MODIFIERS",
    "TRANSACTION_WORDS",
    "VALUE_FUNCTIONS",
]

# Upper-cased in fingerprints and followed by a space before "(".
STRUCTURAL_KEYWORDS = frozenset(
    """
    ABORT ADD ALL ALTER ANALYZE AND ANY AS ASC ATTACH BEGIN BETWEEN BOTH BY
    CASCADE CASE CHECK COLLATE COLUMN COMMENT COMMIT CONFLICT CONSTRAINT CREATE
    CROSS CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CYCLE DATABASE DEFAULT
    DEFERRABLE DELETE DESC DETACH DISTINCT DO DROP DUPLICATE ELSE END ESCAPE
    EXCEPT EXCLUSIVE EXISTS EXPLAIN FALSE FETCH FILTER FIRST FOLLOWING FOR
    FOREIGN FROM FULL GRANT GROUP GROUPS HAVING IGNORE ILIKE IMMEDIATE IN INDEX
    INNER INSERT INTERSECT INTERVAL INTO IS ISNULL ISOLATION JOIN KEY LAST
    LATERAL LEADING LEFT LEVEL LIKE LIMIT LOCK LOCKED MATERIALIZED MERGE MODE
    NATURAL NEXT NO NOT NOTHING NOTNULL NOWAIT NULL NULLS OF OFFSET ON ONLY OR
    ORDER OUTER OVER PARTITION PRAGMA PRECEDING PRIMARY RANGE RECURSIVE
    REFERENCES REGEXP RELEASE RENAME REPLACE RESTRICT RETURNING REVOKE RIGHT
    ROLLBACK ROWS SAVEPOINT SEARCH SELECT SET SHARE SHOW SIMILAR SKIP SOME START
    STRAIGHT_JOIN TABLE TEMP TEMPORARY THEN TIES TO TRAILING TRANSACTION TRUE
    TRUNCATE UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW WHEN WHERE
    WINDOW WITH WITHIN WITHOUT ZONE
    """.split()
)

# Upper-cased in fingerprints, no space before "(": function-like keywords
# and type names.
FUNCTION_KEYWORDS = frozenset(
    """
    ABS ARRAY AVG BIGINT BLOB BOOLEAN BYTEA CAST CHAR COALESCE CONCAT COUNT DATE
    DATETIME DECIMAL DOUBLE EXTRACT FLOAT GREATEST IFNULL INT INTEGER JSON JSONB
    LEAST LENGTH LOWER MAX MIN NULLIF NUMERIC OVERLAY POSITION REAL ROUND ROW
    SMALLINT SUBSTR SUBSTRING SUM TEXT TIME TIMESTAMP TRIM UPPER UUID VARCHAR
    """.split()
)

KEYWORDS = STRUCTURAL_KEYWORDS | FUNCTION_KEYWORDS

# Words that are syntax, not a function call, when "(" follows them.
NOT_A_CALL = frozenset(
    """
    ALL AND ANY ARRAY AS BETWEEN BY CASE CHECK CONFLICT CYCLE DEFAULT DISTINCT
    DO ELSE END ESCAPE EXCEPT EXISTS FILTER FROM GROUP GROUPS HAVING IN INDEX
    INTERSECT INTO IS JOIN KEY LATERAL LIKE ILIKE LIMIT MATERIALIZED NOT OF
    OFFSET ON ONLY OR OVER PARTITION PRIMARY RANGE RECURSIVE REFERENCES
    RETURNING ROWS SELECT SET SOME TABLE THEN TO UNION UNIQUE USING VALUES WHEN
    WHERE WINDOW WITH WITHIN
    """.split()
)

# Words after which a following word is not an alias of the preceding table.
ALIAS_STOP = KEYWORDS | frozenset("FORCE INDEXED PROCEDURE TABLESAMPLE USE".split())

# End a FROM / UPDATE table list at the same parenthesis depth.
CLAUSE_END = frozenset(
    """
    WHERE GROUP HAVING ORDER LIMIT OFFSET FETCH UNION INTERSECT EXCEPT WINDOW
    RETURNING SET FOR SELECT VALUES INTO PROCEDURE
    """.split()
)

# SQL value functions called without parentheses; in FROM (``FROM
# current_user AS s``) they are a function's range variable, not a table.
VALUE_FUNCTIONS = frozenset(
    """
    current_catalog current_date current_role current_schema current_time
    current_timestamp current_user localtime localtimestamp session_user
    system_user user
    """.split()
)

# A "(" followed by one of these (after more "(") opens a subquery.
SUBQUERY_START = frozenset({"SELECT", "WITH", "VALUES", "TABLE"})

# Words that may stand between FROM/JOIN/UPDATE/DELETE FROM and the table.
TABLE_MODIFIERS = frozenset(
    {"ONLY", "LATERAL", "LOW_PRIORITY", "HIGH_PRIORITY", "DELAYED", "IGNORE", "QUICK"}
)
INSERT_MODIFIERS = frozenset({"LOW_PRIORITY", "HIGH_PRIORITY", "DELAYED", "IGNORE"})

DML_KINDS = {
    "SELECT": "select",
    "VALUES": "select",
    "TABLE": "select",
    "INSERT": "insert",
    "REPLACE": "insert",
    "UPDATE": "update",
    "DELETE": "delete",
}
DDL_WORDS = frozenset(
    """
    ALTER ANALYZE ATTACH CLUSTER COMMENT CREATE DETACH DROP GRANT IMPORT
    OPTIMIZE REFRESH REINDEX RENAME REPAIR REVOKE SECURITY TRUNCATE VACUUM
    """.split()
)
TRANSACTION_WORDS = frozenset(
    {"ABORT", "BEGIN", "COMMIT", "END", "RELEASE", "ROLLBACK", "SAVEPOINT"}
)
# Most restrictive first: the kind of a multi-statement request.
KIND_SEVERITY = ("ddl", "other", "delete", "update", "insert", "select", "transaction")
