"""The ``convgrad explain`` command: parse shapes and options, print the report, draw."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .explain import ORIGIN_INPUT, ORIGIN_WEIGHT, explain


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise _ArgumentError(message)


def parse_shape(text: str) -> tuple[int, ...]:
    """'5x100x100' (or '5,100,100') -> (5, 100, 100)."""
    parts = text.replace(",", "x").replace("X", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"a shape must look like 5x100x100, got {text!r}") from None
    return values


def parse_ints(text: str, name: str) -> int | tuple[int, ...]:
    """'2' -> 2; '2,1' -> (2, 1)."""
    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"{name} must be an int or comma-separated ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def parse_padding(text: str):
    """'same' | 'valid' | 'full' | '1' | '1,2' | '1:2,0:1' (low:high per dim)."""
    if text in ("same", "valid", "full"):
        return text
    items = []
    for part in text.split(","):
        try:
            if ":" in part:
                lo, hi = part.split(":")
                items.append((int(lo), int(hi)))
            else:
                items.append(int(part))
        except ValueError:
            raise ValueError(
                f"padding must be same, valid, full, an int, ints per dim (1,2) or low:high pairs "
                f"(1:2,0:1), got {text!r}"
            ) from None
    if len(items) == 1 and isinstance(items[0], int):
        return items[0]
    return tuple(items)


def main(argv: list[str]) -> int:
    """``convgrad explain``: print the explanation of a layer (default: the origin layer)."""
    parser = _Parser(
        prog="convgrad explain",
        description="Explain a convolution layer: shapes, padding, each gradient as a "
        "convolution, costs. Default: the origin layer X 5x100x100, 10 filters 5x5x5.",
    )
    parser.add_argument(
        "--input",
        default="x".join(map(str, ORIGIN_INPUT)),
        help="input shape C x spatial or N x C x spatial, e.g. 5x100x100",
    )
    parser.add_argument(
        "--weight",
        default="x".join(map(str, ORIGIN_WEIGHT)),
        help="weight shape K x C/groups x kernel, e.g. 10x5x5x5",
    )
    parser.add_argument("--stride", default="1", help="int or per dim, e.g. 2 or 2,1")
    parser.add_argument(
        "--padding",
        default="0",
        help="int, per dim (1,2), low:high pairs (1:2,0:1), same, valid or full",
    )
    parser.add_argument("--dilation", default="1", help="int or per dim")
    parser.add_argument("--groups", default="1", help="int")
    parser.add_argument(
        "--padding-mode", default="zeros", help="zeros, reflect, replicate or circular"
    )
    parser.add_argument(
        "--transposed",
        action="store_true",
        help="a transposed convolution (weight C x K/groups x kernel)",
    )
    parser.add_argument("--output-padding", default="0", help="transposed only: int or per dim")
    parser.add_argument("--batch", default=None, help="batch size for an unbatched --input")
    parser.add_argument("--dtype", default="float64", choices=("float16", "float32", "float64"))
    parser.add_argument(
        "--algorithm", default="auto", help="the functions' algorithm option (default: auto)"
    )
    parser.add_argument(
        "--workspace-limit",
        default=None,
        help="workspace limit in bytes (default: the limit in force, 256 MiB unless set)",
    )
    parser.add_argument("--figure", default=None, help="also draw the tiling to this PNG/SVG")
    parser.add_argument(
        "--html",
        default=None,
        help="also write the interactive gradient explorer of the layer to this .html file",
    )
    parser.add_argument(
        "--worked",
        action="store_true",
        help="add a worked example with numbers to the figure (small layers)",
    )
    try:
        args = parser.parse_args(argv)
        groups = parse_ints(args.groups, "groups")
        if not isinstance(groups, int):
            raise ValueError(f"groups must be one int, got {args.groups!r}")
        report = explain(
            parse_shape(args.input),
            parse_shape(args.weight),
            stride=parse_ints(args.stride, "stride"),
            padding=parse_padding(args.padding),
            dilation=parse_ints(args.dilation, "dilation"),
            groups=groups,
            padding_mode=args.padding_mode,
            transposed=args.transposed,
            output_padding=parse_ints(args.output_padding, "output_padding"),
            batch=None if args.batch is None else parse_ints(args.batch, "batch"),
            dtype=args.dtype,
            algorithm=args.algorithm,
            workspace_limit=(
                None
                if args.workspace_limit is None
                else parse_ints(args.workspace_limit, "workspace_limit")
            ),
        )
        # `is not None`: an empty --figure "" is an error, not a figure silently not drawn
        suffix = None if args.figure is None else Path(args.figure).suffix.lower()
        if suffix is not None and suffix not in (".png", ".svg", ".pdf"):
            raise ValueError(f"--figure must end in .png, .svg or .pdf, got {args.figure!r}")
        if args.worked and not args.figure:
            raise ValueError("--worked adds to the figure: give --figure out.png too")
        page = None
        if args.html is not None:  # built before anything is printed: a refusal is one line
            if Path(args.html).suffix.lower() not in (".html", ".htm"):
                raise ValueError(f"--html must end in .html or .htm, got {args.html!r}")
            page = report.to_html()
    except (_ArgumentError, ValueError, TypeError) as exc:
        print(f"convgrad explain: error: {exc}", file=sys.stderr)
        return 2
    if args.figure:  # a missing matplotlib stops here, before the report is printed
        from .figure import require_matplotlib

        require_matplotlib()
    report.print()
    if page is not None:
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as exc:
            print(f"convgrad explain: error: cannot write page: {exc}", file=sys.stderr)
            return 2
        print(f"explorer page written to {args.html}")
    if args.figure:
        try:
            report.figure(args.figure, worked=True if args.worked else None)
        except (ValueError, OSError) as exc:
            print(f"convgrad explain: error: cannot write figure: {exc}", file=sys.stderr)
            return 2
        print(f"figure written to {args.figure}")
        from .figure import layout, worked_possible

        if args.worked and not worked_possible(layout(report)):
            print(
                "note: no worked example: it is drawn for 1-D and 2-D layers whose input and "
                "output are at most 12 per side",
                file=sys.stderr,
            )
    return 0
