#include "pipeline/junit_report.h"

#include <cstdio>
#include <sstream>
#include <vector>

#include "support/atomic_file.h"
#include "support/utf8.h"

namespace lathe {
namespace {

// Text for an attribute: markup escaped; bytes that are not valid UTF-8, and the control
// characters XML 1.0 cannot hold even as references, become U+FFFD.
std::string attribute(std::string_view text) {
  std::string escaped;
  for (std::size_t i = 0; i < text.size();) {
    const auto code = utf8::decode(text, i);
    if (!code) {
      escaped += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    const char32_t c = code->value;
    if (c == '&') {
      escaped += "&amp;";
    } else if (c == '<') {
      escaped += "&lt;";
    } else if (c == '>') {
      escaped += "&gt;";
    } else if (c == '"') {
      escaped += "&quot;";
    } else if (c == '\n' || c == '\t' || c == '\r') {
      escaped += "&#" + std::to_string(static_cast<int>(c)) + ";";
    } else if (c < 0x20 || c == 0xFFFE || c == 0xFFFF) {
      escaped += "\xEF\xBF\xBD";
    } else {
      escaped.append(text.substr(i, code->size));
    }
    i += code->size;
  }
  return escaped;
}

std::string seconds(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3f", value);
  return text;
}

struct TestCase {
  std::string name;
  double time = 0;
  std::string problem;  // "", "failure" or "error"
  std::string type;
  std::string message;
};

void write_suite(std::ostringstream& out, const std::string& name, const std::vector<TestCase>& cases) {
  int failures = 0, errors = 0;
  double total = 0;
  for (const auto& test : cases) {
    failures += test.problem == "failure";
    errors += test.problem == "error";
    total += test.time;
  }
  out << "  <testsuite name=\"" << attribute(name) << "\" tests=\"" << cases.size() << "\" failures=\"" << failures
      << "\" errors=\"" << errors << "\" skipped=\"0\" time=\"" << seconds(total) << "\">\n";
  for (const auto& test : cases) {
    out << "    <testcase classname=\"" << attribute(name) << "\" name=\"" << attribute(test.name) << "\" time=\""
        << seconds(test.time) << "\"";
    if (test.problem.empty()) {
      out << "/>\n";
      continue;
    }
    out << ">\n      <" << test.problem << " type=\"" << attribute(test.type) << "\" message=\"" << attribute(test.message)
        << "\"/>\n    </testcase>\n";
  }
  out << "  </testsuite>\n";
}

}  // namespace

std::string junit_xml(const nlohmann::json& report) {
  std::vector<std::pair<std::string, std::vector<TestCase>>> suites;
  const std::string status = report.value("status", "internal_error");

  std::vector<TestCase> passes;
  if (const auto found = report.find("passes"); found != report.end() && found->is_array()) {
    for (std::size_t i = 0; i < found->size(); ++i) {
      const auto& pass = (*found)[i];
      passes.push_back({std::to_string(i + 1) + " " + pass.value("name", std::string("pass")), pass.value("wall_seconds", 0.0)});
    }
  }
  suites.emplace_back("lathe.passes", std::move(passes));

  std::vector<TestCase> gates;
  if (const auto found = report.find("gates"); found != report.end() && found->is_array()) {
    for (const auto& gate : *found) {
      TestCase test{gate.value("gate", std::string("gate"))};
      if (!gate.value("passed", false)) {
        test.problem = "failure";
        test.type = "gate_failed";
        test.message = "value " + gate["value"].dump() + " against the limit " + gate["limit"].dump();
      }
      gates.push_back(std::move(test));
    }
  }
  suites.emplace_back("lathe.gates", std::move(gates));

  // The run's own time: loading and writing (the passes have theirs).
  TestCase run{"run"};
  if (const auto load = report.find("load"); load != report.end()) run.time += load->value("wall_seconds", 0.0);
  if (const auto outputs = report.find("outputs"); outputs != report.end() && outputs->is_array())
    for (const auto& output : *outputs) run.time += output.value("wall_seconds", 0.0);
  if (status == "bad_input" || status == "internal_error") {
    run.problem = "error";
    run.type = status;
    run.message = report.value("message", std::string());
  }
  suites.emplace_back("lathe.run", std::vector<TestCase>{run});

  int tests = 0, failures = 0, errors = 0;
  for (const auto& [name, cases] : suites)
    for (const auto& test : cases) {
      ++tests;
      failures += test.problem == "failure";
      errors += test.problem == "error";
    }
  std::ostringstream out;
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"lathe\" tests=\"" << tests << "\" failures=\""
      << failures << "\" errors=\"" << errors << "\">\n";
  for (const auto& [name, cases] : suites) write_suite(out, name, cases);
  out << "</testsuites>\n";
  return out.str();
}

void write_junit(const nlohmann::json& report, const std::filesystem::path& path) {
  const auto text = junit_xml(report);
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

}  // namespace lathe
