#pragma once

// Before any work starts: nothing lathe writes may touch what it reads, another of its outputs,
// or the system.

#include <filesystem>

#include "pipeline/recipe.h"

namespace lathe {

// Refuses, with an InputError naming the recipe line (or --report), an output or report path
//  - that is, contains or lies inside an input: the model's folder (the folder given, or the one
//    holding the checkpoint file given), its config, the data files, the recipe file;
//  - that is, contains or lies inside another output or the report (an ONNX output's external
//    data file <path>.data counts as part of it);
//  - that is a system folder (/, /usr, /etc, $HOME, ...) or lies inside /proc, /sys, /dev, /boot,
//    /etc, /bin, /sbin, /lib or /usr outside /usr/local;
//  - of the wrong kind: an ONNX output or the report that is an existing folder, a safetensors
//    output (a folder) that is an existing file.
// Paths are compared after resolving symbolic links, so a link to an input is that input.
// `report_path` may be empty (no report); `report_on_command_line` says it came from --report,
// otherwise it is the default beside the first output and errors name that output's line.
// `junit_path` (--junit) is checked as the report is.
void check_output_paths(const Recipe& recipe, const std::filesystem::path& report_path, bool report_on_command_line,
                        const std::filesystem::path& recipe_file = {}, const std::filesystem::path& junit_path = {});

// Whether a report may be written at `path` when the run failed before check_output_paths
// cleared it (a recipe that does not parse, say): only a new file in an existing folder outside
// the system folders, or a report lathe wrote before.
bool may_hold_failure_report(const std::filesystem::path& path);

}  // namespace lathe
