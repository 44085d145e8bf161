"""The ``s3`` command line (also ``python -m s3``).

    s3 check [--params FILE] [--no-data]      pre-flight check of a run: parameters, weights, dataset files
    s3 demo                                   run the offline demo pipeline
    s3 synonyms check [--dataset ID ...]      coverage and statistics of the synonym bank
    s3 synonyms repair FILE                   drop duplicate records of an interrupted generation
    s3 synonyms wordnet --classnames FILE     the ImageNet bank from WordNet synsets (ablation)
    s3 data verify --root DIR [--dataset ID]  check datasets against the protocol (decodes every image)

A problem the user can fix is printed as one line starting with ``error:`` (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _synonyms_check(args: argparse.Namespace) -> int:
    from s3.synonyms.bank import BANK_SIZES, BankError, bank_file, check_bank, read_bank

    datasets = args.dataset or list(BANK_SIZES)
    known = [*BANK_SIZES, "imagenet_wordnet"]
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise BankError(f"unknown bank(s) {unknown}; choose from {', '.join(known)}")
    classnames = None
    if args.classnames:
        if len(datasets) != 1:
            print("ERROR: --classnames needs exactly one --dataset", file=sys.stderr)
            return 2
        classnames = [ln.strip() for ln in Path(args.classnames).read_text().splitlines() if ln.strip()]
    failed = False
    reports = []
    for dataset in datasets:
        try:
            report = check_bank(dataset, read_bank(bank_file(args.bank_dir, dataset)), classnames, args.min_synonyms)
        except BankError as error:
            print(f"{dataset:<15} ERROR {error}")
            failed = True
            continue
        reports.append(report)
        print(report.line())
        for missing in report.missing:
            print(f"    without synonyms: {missing}")
        failed |= not report.ok
    if reports and not args.dataset:
        counts = [report.synonyms_mean * report.num_classes for report in reports]
        classes = sum(r.num_classes for r in reports)
        print(f"{'all':<15} classes {classes:>5}  synonyms/class mean {sum(counts) / classes:5.2f} "
              f"min {min(r.synonyms_min for r in reports):>2} max {max(r.synonyms_max for r in reports):>2}")
    return 1 if failed else 0


def _synonyms_repair(args: argparse.Namespace) -> int:
    from s3.synonyms.bank import repair_bank

    kept, dropped = repair_bank(args.file)
    print(f"{args.file}: kept {kept} records, dropped {dropped} duplicates")
    return 0


def _check(args: argparse.Namespace) -> int:
    import time

    from s3.pipeline.check import check_run

    start = time.perf_counter()
    problems = check_run(args.params, data=not args.no_data)
    for problem in problems:
        print(f"  - {problem}")
    took = f"({time.perf_counter() - start:.1f} s)"
    if problems:
        print(f"{args.params}: {len(problems)} problem(s); fix them before running the pipeline {took}")
        return 1
    print(f"{args.params}: ok: parameters, weights{'' if args.no_data else ' and dataset files'} {took}")
    return 0


def _synonyms_wordnet(args: argparse.Namespace) -> int:
    from s3.synonyms.bank import write_bank
    from s3.synonyms.wordnet import read_classnames_txt, wordnet_records

    records = wordnet_records(read_classnames_txt(args.classnames), args.wordnet_dir)
    write_bank(args.out, records)
    counts = [len(r.synonyms) for r in records]
    print(f"wrote {len(records)} records to {args.out}; names per class mean {sum(counts) / len(counts):.2f} "
          f"min {min(counts)} max {max(counts)}")
    return 0


def _data_verify(args: argparse.Namespace) -> int:
    from s3.data.verify import format_reports, verify_all

    root = args.root or os.environ.get("S3_DATA_ROOT")
    if not root:
        print("ERROR: give --root DIR or set S3_DATA_ROOT", file=sys.stderr)
        return 2
    reports = verify_all(root, args.dataset or None, decode=not args.quick)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=1))
    else:
        print(format_reports(reports))
    return 0 if all(r.ok for r in reports) else 1


def _demo(args: argparse.Namespace) -> int:
    from s3.demo.workspace import main as demo_main

    return demo_main(["--workspace", args.workspace] if args.workspace else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s3", description="S^3: synonymous semantic spaces for CLIP")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="pre-flight check: parameters, weights and dataset files, in seconds")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--no-data", action="store_true", help="skip the dataset files")
    check.set_defaults(run=_check)

    demo = commands.add_parser("demo", help="run the offline demo pipeline")
    demo.add_argument("--workspace", default=None)
    demo.set_defaults(run=_demo)

    synonyms = commands.add_parser("synonyms", help="synonym bank tools").add_subparsers(dest="action", required=True)
    check = synonyms.add_parser("check", help="coverage of the bank against class lists (by index)")
    check.add_argument("--bank-dir", default="data/synonyms")
    check.add_argument("--dataset", action="append", help="bank id (repeatable); default: all")
    check.add_argument("--classnames", help="a file with the dataset's class names, one per line, in label order")
    check.add_argument("--min-synonyms", type=int, default=3, help="fewer names (label included) count as missing")
    check.set_defaults(run=_synonyms_check)
    repair = synonyms.add_parser("repair", help="drop duplicate records (two generation runs wrote the same file)")
    repair.add_argument("file", help="the bank file (JSONL) named by the error")
    repair.set_defaults(run=_synonyms_repair)
    wordnet = synonyms.add_parser("wordnet", help="build the ImageNet bank from WordNet 3.0 synsets (an ablation)")
    wordnet.add_argument("--classnames", required=True, help="CoOp's ImageNet classnames.txt ('<wnid> <name>' lines)")
    wordnet.add_argument("--wordnet-dir", default="/usr/share/wordnet")
    wordnet.add_argument("--out", default="data/synonyms/imagenet_wordnet.jsonl")
    wordnet.set_defaults(run=_synonyms_wordnet)

    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="action", required=True)
    verify = data.add_parser("verify", help="check datasets in the CoOp layout")
    verify.add_argument("--root", help="data root (default: $S3_DATA_ROOT)")
    verify.add_argument("--dataset", action="append", help="benchmark id (repeatable); default: all 15 classification and 4 segmentation sets")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument("--quick", action="store_true", help="read image headers only instead of decoding every image")
    verify.set_defaults(run=_data_verify)

    args = parser.parse_args(argv)
    from s3.errors import S3Error

    try:
        return args.run(args)
    except S3Error as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
