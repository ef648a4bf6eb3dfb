"""Mutation testing around mutmut (configured in pyproject.toml, [tool.mutmut]).

    python tools/mutation.py report [--out mutation-report.md]
        after ``mutmut run`` (make mutate): kill rate per module and the survivors, each with its diff
    python tools/mutation.py sample [--key K] [--functions 3] [--budget 170]
        CI: a small rotating sample. The key (default: the day number) picks one of the modules and
        a few of its functions; their first mutants run, in a scratch copy of the repository, against
        the fast tests of that module only, within the time budget. Fails if no mutant was tested
        (so a broken test selection cannot pass silently); survivors are listed, and with --strict
        any survivor not reviewed in tools/mutation_survivors.txt fails the run.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MUTMUT = [sys.executable, "-m", "mutmut"]
REVIEWED = REPO / "tools" / "mutation_survivors.txt"

# module -> the fast tests that exercise it (what a sample of its mutants runs against)
R = "tests/test_regressions.py::"
E2E = R + "test_style_index_reaches_the_table_cell_of_its_style"
TEXTURAL = R + "test_textural_loss_compares_with_the_ground_truth_sketch"
M = "tests/test_mutants.py::"  # fast tests written against the survivors of `make mutate`, by module
M_FILEIO = [M + t for t in ("test_transparent_sketch_pixels_become_white_paper",
                            "test_palette_and_la_images_are_flattened_on_white",
                            "test_palette_alpha_tiff_is_flattened_on_white",
                            "test_only_grey_and_rgb_requests_are_flattened",
                            "test_read_image_without_a_mode_keeps_the_file_mode_and_detaches_from_it",
                            "test_missing_and_corrupt_images_are_data_errors_naming_the_file",
                            "test_file_hashes_match_hashlib_and_git",
                            "test_parquet_is_written_without_the_frame_index",
                            "test_the_write_probe_is_made_inside_the_folder",
                            "test_atomic_outputs_get_the_umask_mode_and_keep_their_suffix",
                            "test_a_failing_block_leaves_neither_temporary_nor_final_file",
                            "test_unwritable_destination_is_a_data_error_naming_it",
                            "test_write_errors_name_the_file_the_reason_and_a_hint_per_errno",
                            "test_json_is_sorted_indented_and_converts_numpy_and_paths",
                            "test_save_image_round_trips_uint8_and_refuses_other_types")]
M_DATA = [M + t for t in ("test_training_crops_are_one_window_of_the_zero_padded_pair",
                          "test_training_epochs_visit_each_pair_once_and_replay_from_the_saved_state",
                          "test_resize_u8_keeps_same_size_and_rounds_to_uint8",
                          "test_load_split_decodes_resizes_and_keeps_the_asked_order",
                          "test_load_split_errors_name_what_is_missing")]
M_INFER = [M + t for t in ("test_fit_to_centres_padding_and_crops_with_the_odd_pixel_after",
                           "test_network_inputs_resize_to_input_image_then_frame_photo_and_depth",
                           "test_network_outputs_crop_grey_resize_and_clamp",
                           "test_infer_mode_train_draws_one_image_at_a_time_with_dropout_on",
                           "test_a_file_without_spec_or_generators_is_not_a_model",
                           "test_cross_style_inference_draws_the_first_photos_in_every_style",
                           "test_unpaired_depth_model_draws_with_g_a_from_its_depth_into_an_existing_folder",
                           "test_inference_resizes_as_pillow_does")]
M_PROTOCOL = [M + t for t in ("test_round_half_away_from_zero_as_matlab",
                              "test_rgb2gray_drops_alpha_passes_grey_and_clips",
                              "test_keys_cubic_kernel_by_hand", "test_uint8_resize_clips_the_cubic_overshoot",
                              "test_contributions_sum_to_one_and_mirror_at_the_border",
                              "test_original_framing_cuts_the_crop_box_scaled_to_the_result",
                              "test_native_ground_truth_is_the_crop_box_of_the_archive_sketch",
                              "test_native_ground_truth_of_a_transparent_sketch_is_on_white_paper")]
M_EVALUATE = [M + t for t in ("test_only_image_files_are_results",
                              "test_evaluate_folder_lists_missing_and_ignored_files_beside_the_metrics",
                              "test_score_variant_lists_missing_and_ignored_samples_and_refuses_other_folders",
                              "test_cpu_metrics_file_each_value_under_its_metric_and_image",
                              "test_ms_ssim_is_scored_when_the_image_holds_five_scales",
                              "test_fid_and_kid_per_group_with_replicates_and_too_small_sets",
                              "test_missing_network_weights_give_named_nan_rows_when_allowed",
                              "test_real_features_are_cached_per_network_and_ground_truth",
                              "test_evaluate_folder_names_each_missing_and_ignored_file",
                              "test_a_folder_without_fs2k_names_is_one_line_saying_how_to_name_them",
                              "test_score_writes_one_record_per_value_with_its_group", "test_score_defaults",
                              "test_fsim_and_scoot_read_the_ground_truths_cached_features",
                              "test_a_missing_network_is_named_by_its_file_in_the_reason_and_how_to_get_it_in_the_log",
                              "test_score_variant_records_every_missing_ignored_and_misframed_file")]
M_NETWORKS = [M + t for t in ("test_a_wrong_weights_file_is_a_weights_error_naming_it",
                              "test_lpips_network_is_frozen_and_refuses_wrong_shapes_by_name")]
M_FSIM = [M + "test_fsim_equals_piq_on_odd_and_downsampled_sizes",
          M + "test_fsim_of_a_flat_image_against_a_textured_one_equals_piq"]
M_FID = [M + "test_fid_is_defined_from_two_images_per_set_and_nan_below"]
M_CATALOGUE = [M + "test_every_cpu_metric_in_the_catalogue_computes_its_definition"]
M_LOSSES = [M + t for t in ("test_image_gradients_and_textural_loss_in_every_mode_against_scipy",
                            "test_geometric_loss_default_is_the_papers_mse_and_rmse_of_equal_maps_is_zero",
                            "test_gan_losses_by_hand_on_asymmetric_logits",
                            "test_edge_loss_feeds_hed_images_in_0_1_and_lpips_edges_in_minus_1_1",
                            "test_vgg_loss_network_is_frozen")]
M_SCOOT = [M + "test_scoot_of_images_too_small_for_every_block"]
M_SIMILARITY = [M + "test_ssim_of_a_batch_is_each_pair_by_matlabs_definition"]
M_LAYERS = [M + t for t in ("test_gaussian_pyramid_on_odd_non_square_and_non_power_of_two_sizes",
                            "test_condition_resizes_depth_by_the_chosen_pyramid_and_keeps_the_depth_dtype",
                            "test_layer_defaults_are_the_plain_hida_layer", "test_any_one_condition_is_enough",
                            "test_layer_errors_name_the_bad_value",
                            "test_norm_none_is_the_identity_and_leaky_relu_slope_is_0_2",
                            "test_infoacon_parameters_have_the_released_shape",
                            "test_dog_weights_start_as_pytorchs_conv_default_and_keep_the_input_dtype")]
M_TABLES = [M + t for t in ("test_table_spec_carries_the_run_and_leaves_out_variants_whose_weights_are_missing",
                            "test_attribute_header_text_and_unknown_codes",
                            "test_attribute_codes_stay_integers_when_an_image_has_no_annotation")]
M_INPUTS = [M + t for t in ("test_framing_findings_are_whole_records",
                            "test_a_non_square_ground_truth_size_is_named_width_first",
                            "test_enforce_names_the_first_ten_and_counts_the_rest",
                            "test_report_logs_each_kind_once_in_order_with_names_and_writes_them_all")]
H = "tests/test_hardening.py::"
MF = "tests/test_metfaces.py::"
TESTS = {
    "src/facesketch/metrics/evaluate.py": ["tests/test_metrics.py", E2E] + M_EVALUATE,
    "src/facesketch/metrics/fid.py": ["tests/test_metrics.py", E2E] + M_FID,
    "src/facesketch/metrics/networks.py": ["tests/test_metrics.py", E2E] + M_NETWORKS,
    "src/facesketch/metrics/protocol.py": ["tests/test_metrics.py", R + "test_resize_passes_run_in_matlabs_order"]
    + M_PROTOCOL,
    "src/facesketch/metrics/fsim.py": ["tests/test_metrics.py", R + "test_fsim_constants_on_low_contrast_images"]
    + M_FSIM,
    "src/facesketch/metrics/scoot.py": ["tests/test_metrics.py"] + M_CATALOGUE + M_SCOOT,
    "src/facesketch/metrics/similarity.py": ["tests/test_metrics.py"] + M_CATALOGUE + M_SIMILARITY,
    "src/facesketch/metrics/gt_features.py": ["tests/test_gt_features.py"],
    "src/facesketch/metrics/kid.py": ["tests/test_stats.py",
                                      M + "test_fid_and_kid_per_group_with_replicates_and_too_small_sets"],
    "src/facesketch/metrics/inputs.py": M_INPUTS + [H + "test_sixteen_bit_result_is_converted_not_clipped_to_white",
                                                    H + "test_float_result_is_refused_by_name",
                                                    H + "test_misframed_result_is_a_named_warning_or_an_error"],
    "src/facesketch/metrics/semantic.py": [
        MF + "test_semantic_score_by_region_as_the_authors_script",
        MF + "test_semantic_score_flattened_is_the_mean_cosine_of_high_level_features"],
    "src/facesketch/report/tables.py": ["tests/test_report.py", E2E] + M_TABLES,
    "src/facesketch/models/layers.py": ["tests/test_models.py", R + "test_dyspade_residual_forms_match_their_equations",
                                        R + "test_dog_mask_logits_receive_their_true_gradient",
                                        R + "test_gaussian_depth_pyramid_uses_the_binomial_kernel"] + M_LAYERS,
    "src/facesketch/train/data.py": [R + "test_training_batches_carry_the_style_of_their_pair",
                                     TEXTURAL] + M_DATA,
    "src/facesketch/train/infer.py": [E2E,
                                      R + "test_inference_framing_puts_each_pixel_back_where_it_was",
                                      "tests/test_train.py::test_test_framing_round_trips"] + M_INFER,
    "src/facesketch/train/losses.py": ["tests/test_losses.py", TEXTURAL] + M_LOSSES,
    "src/facesketch/fileio.py": [R + "test_a_kill_between_write_and_rename_leaves_no_final_file",
                                 "tests/test_report.py"] + M_FILEIO,
}
TESTED = ("killed", "survived", "timeout", "suspicious", "segfault")


def results(cwd: Path) -> dict[str, str]:
    """{mutant: status} from ``mutmut results --all true``."""
    out = subprocess.run(MUTMUT + ["results", "--all", "true"], cwd=cwd, capture_output=True, text=True).stdout
    return dict(m.groups() for m in re.finditer(r"^\s+(\S+): (.+)$", out, re.M))


def module_of(mutant: str) -> str:
    return mutant.split(".x_")[0].split(".xǁ")[0]


def summary(status: dict[str, str]) -> tuple[str, int, int]:
    killed = sum(s in ("killed", "timeout", "segfault") for s in status.values())
    tested = sum(s in TESTED for s in status.values())
    rate = f"{100 * killed / tested:.1f}%" if tested else "n/a"
    return rate, killed, tested


def reviewed() -> set[str]:
    if not REVIEWED.is_file():
        return set()
    return {line.split()[0] for line in REVIEWED.read_text().splitlines() if line.strip() and not line.startswith("#")}


def report(args) -> int:
    status = results(REPO)
    if not status:
        print("no mutmut results: run `make mutate` first", file=sys.stderr)
        return 1
    known = reviewed()
    rate, killed, tested = summary(status)
    modules = sorted({module_of(m) for m in status})
    complete = [mod for mod in modules if not any(s == "not checked" for k, s in status.items() if module_of(k) == mod)]
    full = {k: v for k, v in status.items() if module_of(k) in complete}
    f_rate, f_killed, f_tested = summary(full)
    f_equiv = sum(v == "survived" and k in known for k, v in full.items())
    lines = ["# Mutation testing report", ""] + ([args.note, ""] if args.note else []) + [
             f"Kill rate {rate}: {killed} of {tested} tested mutants killed (timeouts count as killed); "
             f"{sum(s == 'not checked' for s in status.values())} not checked, "
             f"{sum(s == 'no tests' for s in status.values())} reached by no fast test.", "",
             f"Modules run completely ({len(complete)} of {len(modules)}): {f_killed} of {f_tested} killed ({f_rate}); "
             f"with the {f_equiv} survivors reviewed as equivalent (tools/mutation_survivors.txt) left out, "
             + (f"{100 * f_killed / (f_tested - f_equiv):.1f}%." if f_tested > f_equiv else "n/a."), "",
             "| module | mutants | killed | tested | rate | survived | reviewed equivalent | rate without them "
             "| no tests | not checked |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mod in modules:
        part = {k: v for k, v in status.items() if module_of(k) == mod}
        r, k, t = summary(part)
        c = Counter(part.values())
        eq = sum(v == "survived" and m in known for m, v in part.items())
        r2 = f"{100 * k / (t - eq):.1f}%" if t > eq else "n/a"
        lines.append(f"| {mod}{'' if mod in complete else ' (partial)'} | {len(part)} | {k} | {t} | {r} | "
                     f"{c['survived']} | {eq} | {r2} | {c['no tests']} | {c['not checked']} |")
    survivors = sorted(m for m, s in status.items() if s == "survived")
    lines += ["", f"## Survivors ({len(survivors)}; reviewed ones in tools/mutation_survivors.txt)", ""]
    for m in survivors:
        diff = _diff(m)
        changed = [x for x in diff.splitlines() if x[:1] in "+-" and not x.startswith(("+++", "---"))]
        lines.append(f"- `{m}`{' (reviewed)' if m in known else ''}: " + " / ".join(f"`{x.strip()}`" for x in changed))
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"kill rate {rate} ({killed}/{tested}); modules run completely: {', '.join(complete) or 'none'}; "
          f"report: {args.out}")
    return 0


def _diff(mutant: str) -> str:
    """A mutant's diff, in this process (`mutmut show` starts an interpreter per mutant: minutes for hundreds)."""
    import os

    from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return get_diff_for_mutant(mutant, path=find_mutant(mutant).path)
    finally:
        os.chdir(cwd)


def functions(path: Path) -> list[str]:
    """mutmut's keys of the functions and methods defined in a module (x_f, xǁClassǁm)."""
    tree = ast.parse(path.read_text())
    keys = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            keys.append(f"x_{node.name}")
        elif isinstance(node, ast.ClassDef):
            keys += [f"xǁ{node.name}ǁ{f.name}" for f in node.body
                     if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return keys


def _narrow_config(pyproject: Path, module: str, tests: list[str]) -> None:
    text = pyproject.read_text()
    fmt = lambda xs: "[" + ", ".join(f'"{x}"' for x in xs) + "]"  # noqa: E731
    text, n1 = re.subn(r"(?ms)^only_mutate = \[.*?^\]", f"only_mutate = {fmt([module])}", text)
    text, n2 = re.subn(r"(?ms)^pytest_add_cli_args_test_selection = \[.*?^\]",
                       f"pytest_add_cli_args_test_selection = {fmt(tests)}", text)
    if not (n1 and n2):
        raise SystemExit(f"{pyproject}: [tool.mutmut] has no only_mutate / pytest_add_cli_args_test_selection list")
    pyproject.write_text(text)


def sample(args) -> int:
    key = args.key if args.key is not None else datetime.date.today().toordinal()
    modules = sorted(TESTS)
    module = modules[key % len(modules)]
    rng = random.Random(key)
    funcs = functions(REPO / module)
    picked = sorted(rng.sample(funcs, min(args.functions, len(funcs))))
    dotted = module.removeprefix("src/").removesuffix(".py").replace("/", ".")
    patterns = [f"{dotted}.{f}__mutmut_?" for f in picked]
    print(f"mutation sample (key {key}): {module}, mutants 1-9 of {', '.join(picked)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="facesketch-mutate-") as tmp:
        work = Path(tmp)
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                               capture_output=True, text=True).stdout.split()
        for f in files:
            if (REPO / f).is_file():
                (work / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, work / f)
        _narrow_config(work / "pyproject.toml", module, TESTS[module])
        try:
            run = subprocess.run(MUTMUT + ["run", "--max-children", "1"] + patterns, cwd=work, capture_output=True,
                                 text=True, timeout=args.budget)
            tail = run.stdout[-3000:].replace("\r", "\n")
            finished = run.returncode == 0
        except subprocess.TimeoutExpired:
            tail, finished = "", False
            print(f"time budget of {args.budget} s reached: reporting the mutants tested so far")
        status = {k: v for k, v in results(work).items()
                  if any(re.fullmatch(p.replace(".", r"\.").replace("?", r"\d"), k) for p in patterns)}
    rate, killed, tested = summary(status)
    survivors = sorted(m for m, s in status.items() if s == "survived")
    print(f"sample: {killed} of {tested} tested mutants killed ({rate}); "
          f"{sum(s == 'no tests' for s in status.values())} reached by no fast test")
    for m in survivors:
        print(f"  survived: {m}")
    if tested == 0:
        print("no mutant was tested: the test selection or mutmut failed", file=sys.stderr)
        if tail:
            print(tail, file=sys.stderr)
        return 1
    if not finished and tail:
        print(tail[-1500:], file=sys.stderr)
    new = [m for m in survivors if m not in reviewed()]
    if args.strict and new:
        print(f"{len(new)} survivor(s) not reviewed in {REVIEWED.relative_to(REPO)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("--out", default="mutation-report.md")
    r.add_argument("--note", default="", help="a paragraph put under the title (how and when it was run)")
    s = sub.add_parser("sample")
    s.add_argument("--key", type=int, default=None)
    s.add_argument("--functions", type=int, default=3)
    s.add_argument("--budget", type=int, default=170, help="seconds for the whole sample")
    s.add_argument("--strict", action="store_true")
    args = p.parse_args()
    return report(args) if args.cmd == "report" else sample(args)


if __name__ == "__main__":
    sys.exit(main())
