mod flows {
    selinon_macros::include_flows!("ui-flows/broken.yml", "ui-flows/broken.yml");
}

fn main() {}
