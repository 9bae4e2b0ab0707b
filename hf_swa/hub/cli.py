"""``hf-swa-push``: push an averaged model folder and its model card to the Hugging Face Hub.

    hf-swa-push --model_dir outputs/sst2-swa --repo_id me/bert-sst2-swa \\
        --task_name sst2 --base_model bert-base-uncased [--private] [--results_file all_results.json]

The folder must be the output of ``SWATrainer.save_model`` (weights + ``swa_config.json``).
The endpoint comes from ``HF_ENDPOINT``; the token from ``--token``, ``HF_TOKEN`` or ``hf auth login``.
The generated card is pushed with the weights in one commit and written to ``README.md`` only once the
Hub has it; a failed push changes nothing in the folder and says what to do.
``scripts/push_to_hub.py`` is the same command.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hf-swa-push", description="Write the model card of an averaged model and push the folder to the Hub."
    )
    parser.add_argument("--model_dir", required=True, help="folder written by SWATrainer.save_model")
    parser.add_argument("--repo_id", required=True, help="Hub repository, e.g. me/bert-sst2-swa")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument(
        "--results_file",
        default=None,
        help="results JSON (default: <model_dir>/results.json, else all_results.json)",
    )
    parser.add_argument("--task_name", default=None, help="task name: a tag, and the dataset config (e.g. sst2)")
    parser.add_argument("--base_model", default=None, help="Hub id of the fine-tuned base model")
    parser.add_argument("--dataset_id", default=None, help="Hub dataset id (default: the one results.json names)")
    parser.add_argument("--license", default=None, help="license id for the card metadata, e.g. apache-2.0")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument(
        "--no_card",
        action="store_true",
        help="push the folder's own README.md as it is (default: push a generated card and, once pushed, save it "
        "as README.md)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from hf_swa.hub.push import HubPushError, push_to_hub

    try:  # the folder is checked, and the card rendered, before anything is sent; nothing is written on failure
        url = push_to_hub(
            args.model_dir,
            args.repo_id,
            token=args.token,
            private=args.private,
            commit_message=args.commit_message,
            results=args.results_file,
            replace_card=not args.no_card,
            task_name=args.task_name,
            base_model=args.base_model,
            dataset_id=args.dataset_id,
            license=args.license,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"hf-swa-push: error: {err}", file=sys.stderr)
        return 2
    except HubPushError as err:
        print(f"hf-swa-push: error: {err}", file=sys.stderr)
        return 1
    print(f"pushed {args.model_dir} to {args.repo_id}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
