// The JUnit XML of a report, for every status: valid against tests/cli/junit.xsd (checked with
// xmllint), with messages escaped whatever bytes they hold.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "pipeline/junit_report.h"
#include "pipeline/report.h"
#include "support/errors.h"
#include "test_paths.h"

namespace lathe {
namespace {

bool valid_junit(const std::string& xml) {
  testing::TemporaryFolder folder;
  const auto path = folder / "junit.xml";
  std::ofstream(path) << xml;
  const std::string command = "xmllint --noout --schema '" + std::string(LATHE_SOURCE_DIR) + "/tests/cli/junit.xsd' '" +
                              path.string() + "' 2>/dev/null";
  return std::system(command.c_str()) == 0;
}

TEST(JUnitReport, AnInternalErrorIsAnErroredRun) {
  const auto xml = junit_xml(failure_report(kExitInternalError, "cannot serialize the ONNX model out/m.onnx", "r.yaml"));
  EXPECT_TRUE(valid_junit(xml)) << xml;
  EXPECT_NE(xml.find("<error type=\"internal_error\" message=\"cannot serialize the ONNX model out/m.onnx\"/>"),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("tests=\"1\" failures=\"0\" errors=\"1\""), std::string::npos) << xml;
}

TEST(JUnitReport, MessagesAreEscapedWhateverTheyHold) {
  const std::string message = "r.yaml:3:5: <pass> & \"name\"\twith\na line break, \x01 a control byte and \xff\xfe";
  const auto xml = junit_xml(failure_report(kExitBadInput, message, "r.yaml"));
  EXPECT_TRUE(valid_junit(xml)) << xml;
  EXPECT_NE(xml.find("&lt;pass&gt; &amp; &quot;name&quot;&#9;with&#10;a line break, \xEF\xBF\xBD a control byte and "
                     "\xEF\xBF\xBD\xEF\xBF\xBD"),
            std::string::npos)
      << xml;
}

TEST(JUnitReport, PassesAndGates) {
  nlohmann::json report = {{"status", "gate_failed"},
                           {"load", {{"wall_seconds", 0.25}}},
                           {"passes", {{{"name", "quantize"}, {"wall_seconds", 1.5}}, {{"name", "eval"}, {"wall_seconds", 0.5}}}},
                           {"gates", {{{"gate", "max_kl"}, {"limit", 0.1}, {"value", 0.2}, {"passed", false}},
                                      {{"gate", "min_top1_agreement"}, {"limit", 0.9}, {"value", 0.95}, {"passed", true}}}},
                           {"outputs", nlohmann::json::array()}};
  const auto xml = junit_xml(report);
  EXPECT_TRUE(valid_junit(xml)) << xml;
  for (const char* text : {"<testsuites name=\"lathe\" tests=\"5\" failures=\"1\" errors=\"0\">",
                           "<testsuite name=\"lathe.passes\" tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"2.000\">",
                           "name=\"1 quantize\" time=\"1.500\"", "name=\"2 eval\" time=\"0.500\"",
                           "<failure type=\"gate_failed\" message=\"value 0.2 against the limit 0.1\"/>",
                           "<testcase classname=\"lathe.run\" name=\"run\" time=\"0.250\"/>"})
    EXPECT_NE(xml.find(text), std::string::npos) << text << " not in\n" << xml;
}

}  // namespace
}  // namespace lathe
