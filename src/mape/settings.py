"""/etc/config/mape: defaults, parsing and validation of the user's settings (pure except
for the one function that reads the file)."""
from mape.core.errors import InputError, RuleError
from mape.core.rules import parse_user_rule
from mape.core.ucifile import parse


def user_rules(sections):
    """Rules from `config rule` sections (disabled ones skipped)."""
    rules = []
    for section in sections:
        if section.type != "rule" or str(section.get("enabled", "1")) in ("0", "false", "no", "off"):
            continue
        rules.append(parse_user_rule(section.options))
    return rules


def user_rules_from_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InputError("cannot read %s: %s" % (path, e.strerror))
    try:
        return user_rules(parse(text, source=path))
    except RuleError as e:
        raise RuleError("%s: %s" % (path, e))
