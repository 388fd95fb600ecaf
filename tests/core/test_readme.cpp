// The README's table of types and the quick-start config match the registry (get_attention_info): every
// registered type has a row with its class and required parameters, no row names an unregistered type,
// and the quick-start config builds a layer of every type.
#include "support.hpp"

#include <fstream>
#include <regex>
#include <sstream>

TEST_CASE("README: the table of types matches get_attention_info", "[readme]") {
  std::ifstream in(ATTN_SOURCE_DIR "/README.md");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const auto begin = text.find("<!-- types:begin -->");
  const auto end = text.find("<!-- types:end -->");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  std::istringstream table(text.substr(begin, end - begin));
  const std::regex row(R"(^\| `([a-z0-9_]+)` \| `([A-Za-z0-9]+)` \| .* \| (.*) \|$)");
  const attn::Json info = attn::get_attention_info();
  std::vector<std::string> seen;
  std::string line;
  while (std::getline(table, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, row)) continue;
    const std::string type = m[1];
    INFO("README row for '" << type << "'");
    REQUIRE(info.contains(type));
    REQUIRE(info[type]["class"] == m[2].str());
    std::vector<std::string> required;
    const std::regex name("`([a-z_]+)`");
    const std::string req = m[3];
    for (auto it = std::sregex_iterator(req.begin(), req.end(), name); it != std::sregex_iterator(); ++it)
      required.push_back((*it)[1]);
    REQUIRE(attn::Json(required) == info[type]["required_params"]);
    seen.push_back(type);
  }
  for (const auto& [type, v] : info.items()) {
    INFO("registered type '" << type << "' has no README row");
    REQUIRE(std::find(seen.begin(), seen.end(), type) != seen.end());
  }
}

TEST_CASE("quick-start config: a layer of every registered type", "[readme]") {
  std::ifstream in(ATTN_SOURCE_DIR "/examples/configs/quickstart.json");
  REQUIRE(in.good());
  const attn::Json config = attn::Json::parse(in);
  std::vector<std::string> types;
  for (const auto& entry : config.at("layers")) types.push_back(entry.at("layer").at("type").get<std::string>());
  for (const auto type : attn::attention_type_names) {
    INFO("registered type '" << type << "' has no layer in examples/configs/quickstart.json");
    REQUIRE(std::find(types.begin(), types.end(), std::string(type)) != types.end());
  }
}
