"""Keep botocore's debug log from writing container environment values.

At DEBUG, botocore logs every request's parameters and every response body, which for
RegisterTaskDefinition and DescribeTaskDefinition hold container environment values in clear.
A filter on the loggers that write bodies withholds any record naming ``containerDefinitions``;
every other record (and every other level) is left as it is.
"""

from __future__ import annotations

import logging

__all__ = ["BODY_LOGGERS", "WITHHELD", "install"]

BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.awsrequest", "botocore.auth")
WITHHELD = "(withheld: an ECS task definition, whose environment values are never logged)"
_MARK = "containerDefinitions"


class _Withhold(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot render is left to the handler's own handling
            return True
        if _MARK in text:
            record.msg, record.args = "%s", (WITHHELD,)
        return True


_FILTER = _Withhold()


def install() -> None:
    """Idempotent: the same filter object is added once per logger."""
    for name in BODY_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
