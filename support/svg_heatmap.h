#pragma once

#include <string>
#include <vector>

namespace lathe {

struct Heatmap {
  std::string title;
  std::string row_axis;     // e.g. "layer"
  std::string column_axis;  // e.g. "head"
  std::vector<std::string> row_labels;
  std::vector<std::string> column_labels;
  std::vector<std::vector<double>> values;  // [rows][columns]; NaN draws an empty cell
  double low = 0.0;                         // value drawn white
  double high = 1.0;                        // value drawn darkest
};

// A layer x head grid of per-head values; rows may differ in length (after head removal), the
// missing cells of shorter rows stay empty.
Heatmap head_heatmap(std::string title, const std::vector<std::vector<double>>& scores);

// Text made safe inside SVG/XML elements and attribute values.
std::string xml_escape(const std::string& text);

// A self-contained SVG picture of the grid, each cell labelled with its value.
std::string heatmap_svg(const Heatmap& heatmap);

}  // namespace lathe
