// OnlinePlan: feature references resolved once at apply; Get does one multi-get per view.
#include <algorithm>
#include <charconv>

#include "features/store.h"

namespace lakeloop::features {

struct OnlinePlan::Impl {
  struct ViewPlan {
    const FeatureView* view = nullptr;
    const Entity* entity = nullptr;
    std::shared_ptr<StreamProcessor> processor;  // stream views
    uint64_t schema = 0;                         // batch views: BatchSchema
    std::map<std::string, size_t, std::less<>> feature_index;
  };
  struct Column {
    size_t view = 0;     // index into views
    size_t feature = 0;  // index into the view's features
  };
  // What one request (or a service) reads: columns in response order, the views they touch.
  struct Selection {
    std::vector<std::string> names;  // "view:feature"
    std::vector<Column> columns;
    std::vector<size_t> views;  // distinct, in first-use order
    const Entity* entity = nullptr;
  };

  const OnlineStore* store = nullptr;
  std::vector<ViewPlan> views;
  std::map<std::string, size_t, std::less<>> view_index;
  std::map<std::string, Selection, std::less<>> services;

  // Resolves references; kNotFound for an unknown view or feature, kInvalidArgument for a
  // malformed one or views of different join keys.
  struct Ref {
    std::string_view view;
    std::string_view feature;
  };
  Result<Selection> Select(const std::vector<Ref>& refs) const {
    Selection s;
    s.names.reserve(refs.size());
    s.columns.reserve(refs.size());
    for (const auto& ref : refs) {
      auto vi = view_index.find(ref.view);
      if (vi == view_index.end()) return NotFound("feature view '" + std::string(ref.view) + "'");
      const ViewPlan& vp = views[vi->second];
      if (!vp.entity) {
        return InvalidArgument("feature view '" + std::string(ref.view) +
                               "' has no entity in entities/");
      }
      if (!s.entity) {
        s.entity = vp.entity;
      } else if (s.entity->join_key != vp.entity->join_key) {
        return InvalidArgument("features of different join keys: '" + s.entity->join_key +
                               "' and '" + vp.entity->join_key + "' (view '" +
                               std::string(ref.view) + "')");
      }
      auto add = [&](size_t f) {
        std::string name;
        name.reserve(ref.view.size() + 1 + vp.view->features[f].name.size());
        name.append(ref.view).append(":").append(vp.view->features[f].name);
        s.names.push_back(std::move(name));
        s.columns.push_back({vi->second, f});
      };
      if (ref.feature == "*") {
        for (size_t f = 0; f < vp.view->features.size(); ++f) add(f);
      } else {
        auto fi = vp.feature_index.find(ref.feature);
        if (fi == vp.feature_index.end()) {
          return NotFound("feature '" + std::string(ref.feature) + "' of view '" +
                          std::string(ref.view) + "'");
        }
        add(fi->second);
      }
      if (std::find(s.views.begin(), s.views.end(), vi->second) == s.views.end()) {
        s.views.push_back(vi->second);
      }
    }
    return s;
  }
};

Result<std::shared_ptr<const OnlinePlan>> OnlinePlan::Build(
    Registry registry, const OnlineStore* store,
    std::map<std::string, std::shared_ptr<StreamProcessor>, std::less<>> stream_views) {
  std::vector<std::string> errors = CheckRegistry(registry);
  if (!errors.empty()) {
    std::string msg = "feature registry:";
    for (const auto& e : errors) msg += "\n  " + e;
    return InvalidArgument(msg);
  }
  std::shared_ptr<OnlinePlan> plan(new OnlinePlan());
  plan->registry_ = std::move(registry);  // the Impl points into it: never moved again
  auto impl = std::make_shared<Impl>();
  impl->store = store;
  const Registry& r = plan->registry_;
  for (const auto& v : r.views) {
    Impl::ViewPlan vp;
    vp.view = &v;
    vp.entity = r.EntityOf(v);
    if (v.kind == ViewKind::kStream) {
      auto it = stream_views.find(v.name);
      if (it != stream_views.end()) vp.processor = it->second;
    }
    if (v.kind == ViewKind::kBatch) vp.schema = BatchSchema(v);
    for (size_t f = 0; f < v.features.size(); ++f) vp.feature_index[v.features[f].name] = f;
    impl->view_index[v.name] = impl->views.size();
    impl->views.push_back(std::move(vp));
  }
  for (const auto& s : r.services) {
    std::vector<Impl::Ref> refs;
    for (const auto& f : s.features) refs.push_back({f.view, f.feature});
    ASSIGN_OR_RETURN(Impl::Selection sel, impl->Select(refs));
    impl->services[s.name] = std::move(sel);
  }
  plan->impl_ = std::move(impl);
  return std::shared_ptr<const OnlinePlan>(std::move(plan));
}

Result<OnlineResponse> OnlinePlan::Get(const OnlineRequest& req) const {
  const Impl& impl = *impl_;
  if (req.features.empty() == req.feature_service.empty()) {
    return InvalidArgument("give either 'features' or 'feature_service'");
  }
  Impl::Selection own;
  const Impl::Selection* sel;
  if (!req.feature_service.empty()) {
    auto it = impl.services.find(req.feature_service);
    if (it == impl.services.end()) {
      return NotFound("feature service '" + req.feature_service + "'");
    }
    sel = &it->second;
  } else {
    // Split only: an unknown name fails the lookup (kNotFound); no validation is needed.
    std::vector<Impl::Ref> refs;
    refs.reserve(req.features.size());
    for (const auto& text : req.features) {
      const size_t colon = text.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == text.size() ||
          text.find(':', colon + 1) != std::string::npos) {
        return InvalidArgument("feature reference '" + text + "' must be view:feature or view:*");
      }
      std::string_view t(text);
      refs.push_back({t.substr(0, colon), t.substr(colon + 1)});
    }
    ASSIGN_OR_RETURN(own, impl.Select(refs));
    sel = &own;
  }
  if (req.join_key != sel->entity->join_key) {
    return InvalidArgument("entities are keyed by '" + sel->entity->join_key + "' here, not '" +
                           req.join_key + "'");
  }
  std::vector<std::string> keys;
  if (const auto* ints = std::get_if<std::vector<int64_t>>(&req.keys)) {
    if (sel->entity->type != ValueType::kInt64) {
      return InvalidArgument("'" + req.join_key + "' is a string key; got integers");
    }
    keys.reserve(ints->size());
    for (int64_t k : *ints) keys.push_back(std::to_string(k));
  } else {
    const auto& strs = std::get<std::vector<std::string>>(req.keys);
    if (sel->entity->type != ValueType::kString) {
      return InvalidArgument("'" + req.join_key + "' is an int64 key; got strings");
    }
    keys = strs;
  }
  if (keys.empty()) return InvalidArgument("'entities' needs at least one key");

  OnlineResponse out;
  out.features = sel->names;
  out.values.assign(keys.size(), std::vector<OnlineValue>(sel->columns.size()));
  const int64_t t = req.read_time_us;
  for (size_t vi : sel->views) {
    const Impl::ViewPlan& vp = impl.views[vi];
    if (vp.view->kind == ViewKind::kStream) {
      if (!vp.processor) continue;  // not running: missing
      ASSIGN_OR_RETURN(auto vectors, vp.processor->GetMany(vp.view->name, keys, t));
      for (size_t c = 0; c < sel->columns.size(); ++c) {
        if (sel->columns[c].view != vi) continue;
        const size_t f = sel->columns[c].feature;
        for (size_t k = 0; k < keys.size(); ++k) {
          if (!vectors[k].found) continue;
          OnlineValue& v = out.values[k][c];
          v.status = FeatureStatus::kPresent;
          v.event_time_us = t;
          const auto& fv = vectors[k].values[f];
          if (fv.value) v.value = *fv.value;
        }
      }
    } else {
      ASSIGN_OR_RETURN(auto rows, impl.store->GetMany(vp.view->name, keys));
      for (size_t k = 0; k < keys.size(); ++k) {
        if (!rows[k]) continue;
        ASSIGN_OR_RETURN(BatchRow row, DecodeBatchRow(*rows[k]));
        if (row.schema != vp.schema) continue;  // loaded for another definition: missing
        const bool expired = vp.view->ttl_us > 0 && t - row.event_time_us > vp.view->ttl_us;
        for (size_t c = 0; c < sel->columns.size(); ++c) {
          if (sel->columns[c].view != vi) continue;
          OnlineValue& v = out.values[k][c];
          v.event_time_us = row.event_time_us;
          if (expired) {
            v.status = FeatureStatus::kExpired;
            continue;
          }
          v.status = FeatureStatus::kPresent;
          const size_t f = sel->columns[c].feature;
          if (f < row.values.size()) v.value = row.values[f];
        }
      }
    }
  }
  return out;
}

}  // namespace lakeloop::features
