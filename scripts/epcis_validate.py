#!/usr/bin/env python3
"""Validate EPCIS 2.0 documents against GS1's EPCIS 2.0 JSON Schema, with format checks on.

    python3 scripts/epcis_validate.py --schema EPCIS-JSON-Schema.json [--example KNOWN_GOOD] DOC...

Before the documents, two controls prove the validator can fail and pass: a copy of the first
document with a bare UN/LOCODE as readPoint (not a URI) must be refused, which it is only when
the `uri` format is really checked; and GS1's example document, if given, must be accepted.
Exit status 0 only if every document is valid and both controls behave.
"""

import argparse
import copy
import json
import sys

from jsonschema import Draft7Validator


def errors(validator, document):
    return sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--example", help="a known-good EPCIS document (positive control)")
    parser.add_argument("documents", nargs="+")
    args = parser.parse_args()
    with open(args.schema) as f:
        schema = json.load(f)
    checker = Draft7Validator.FORMAT_CHECKER
    for needed in ("uri", "date-time"):
        if needed not in checker.checkers:
            sys.exit(f"epcis-validate: the `{needed}` format is not checked (install scripts/epcis-requirements.txt)")
    validator = Draft7Validator(schema, format_checker=checker)
    failed = 0
    docs = []
    for path in args.documents:
        with open(path) as f:
            doc = json.load(f)
        docs.append(doc)
        found = errors(validator, doc)
        events = len(doc.get("epcisBody", {}).get("eventList", []))
        if found:
            failed += 1
            print(f"INVALID {path}: {len(found)} error(s)")
            for e in found[:20]:
                print(f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}")
        elif events == 0:
            failed += 1
            print(f"EMPTY {path}: no events to validate")
        else:
            print(f"valid   {path}: {events} events")
    # Negative control: a bare code where a URI belongs must be refused.
    bad = copy.deepcopy(docs[0])
    for event in bad["epcisBody"]["eventList"]:
        if "readPoint" in event:
            event["readPoint"]["id"] = "CNSZX"
            break
    else:
        sys.exit("epcis-validate: the first document has no readPoint to build the negative control from")
    if not errors(validator, bad):
        failed += 1
        print("CONTROL FAILED: a bare UN/LOCODE as readPoint passed; format checks are not on")
    if args.example:
        with open(args.example) as f:
            if errors(validator, json.load(f)):
                failed += 1
                print(f"CONTROL FAILED: GS1's example {args.example} does not validate")
    if failed:
        print(f"epcis-validate: {failed} problem(s)")
        sys.exit(1)
    print(f"epcis-validate: {len(docs)} document(s) valid against {args.schema} (formats checked; controls behave)")


if __name__ == "__main__":
    main()
