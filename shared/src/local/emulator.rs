//! A generator of realistic posts: the three related records of docs/records.md per post, with the same
//! dirt as the real data in realistic proportions (every placeholder of docs/cleaning.md, `k`/`M` follower
//! counts, both timestamp formats, numbers sent as strings, and a few records no cleaning can
//! save). Deterministic for a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::Table;

pub const CATEGORIES: &[&str] = &[
    "art",
    "beauty",
    "christmas",
    "diy-and-crafts",
    "education",
    "event-planning",
    "finance",
    "home-decor",
    "mens-fashion",
    "quotes",
    "tattoos",
    "travel",
    "vehicles",
];

/// Relative popularity of the categories above (the real data leans to a few).
const CATEGORY_WEIGHTS: &[u32] = &[9, 8, 6, 10, 7, 5, 6, 11, 6, 8, 7, 9, 5];

const COUNTRIES: &[&str] = &[
    "Albania",
    "Algeria",
    "American Samoa",
    "Andorra",
    "Angola",
    "Anguilla",
    "Antarctica (the territory South of 60 deg S)",
    "Argentina",
    "Armenia",
    "Aruba",
    "Australia",
    "Austria",
    "Bahamas",
    "Bangladesh",
    "Belgium",
    "Bolivia",
    "Brazil",
    "Bulgaria",
    "Canada",
    "Chad",
    "Chile",
    "China",
    "Colombia",
    "Croatia",
    "Denmark",
    "Egypt",
    "France",
    "Germany",
    "India",
    "Japan",
    "Mexico",
    "Norway",
    "Peru",
    "Poland",
    "Spain",
    "Sweden",
    "Turkey",
    "United Kingdom",
    "United States of America",
    "Vietnam",
];

const FIRST_NAMES: &[&str] = &[
    "Abigail",
    "Alexandra",
    "Andrea",
    "Brandon",
    "Charles",
    "Christopher",
    "Daniel",
    "David",
    "Elizabeth",
    "Emily",
    "Jessica",
    "John",
    "Joseph",
    "Kimberly",
    "Maria",
    "Michael",
    "Rachel",
    "Robert",
    "Sarah",
    "Thomas",
];

const LAST_NAMES: &[&str] = &[
    "Ali",
    "Anderson",
    "Brown",
    "Davis",
    "Garcia",
    "Harris",
    "Jackson",
    "Johnson",
    "Jones",
    "Lee",
    "Lopez",
    "Martin",
    "Miller",
    "Moore",
    "Rodriguez",
    "Smith",
    "Taylor",
    "Thomas",
    "White",
    "Wilson",
];

const TITLE_WORDS: &[&str] = &[
    "Easy",
    "DIY",
    "Cozy",
    "Modern",
    "Vintage",
    "Ideas",
    "Room",
    "Quotes",
    "Tattoo",
    "Travel",
    "Guide",
    "Christmas",
    "Budget",
    "Beauty",
    "Hacks",
    "Art",
    "Small",
    "Living",
    "Wedding",
    "Car",
    "Cute",
    "Best",
    "Décor",
    "Inspiration",
    "Tips",
    "für",
    "日本",
];

/// One post: its three records, and which of them (if any) was made unrecoverable on purpose.
#[derive(Debug, Clone)]
pub struct Post {
    pub ind: i64,
    pub pin: Value,
    pub geo: Value,
    pub user: Value,
    pub poisoned: Option<Table>,
}

impl Post {
    pub fn record(&self, table: Table) -> &Value {
        match table {
            Table::Pin => &self.pin,
            Table::Geo => &self.geo,
            Table::User => &self.user,
        }
    }
}

/// A deterministic stream of posts.
pub struct Emulator {
    rng: StdRng,
    next_ind: i64,
    /// Share of posts with one record no cleaning can save.
    pub poison_rate: f64,
}

impl Emulator {
    /// Posts for `seed`; their `ind`s start at `first_ind`.
    pub fn new(seed: u64, first_ind: i64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed), next_ind: first_ind, poison_rate: 0.005 }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn category(&mut self) -> &'static str {
        let total: u32 = CATEGORY_WEIGHTS.iter().sum();
        let mut roll = self.rng.random_range(0..total);
        for (category, weight) in CATEGORIES.iter().zip(CATEGORY_WEIGHTS) {
            if roll < *weight {
                return category;
            }
            roll -= weight;
        }
        CATEGORIES[0]
    }

    /// A timestamp in `[from_year, to_year]`, in either of the formats the source sends.
    fn timestamp(&mut self, from_year: i32, to_year: i32) -> String {
        let year = self.rng.random_range(from_year..=to_year);
        let (month, day) = (self.rng.random_range(1..=12), self.rng.random_range(1..=28));
        let (h, m, s) = (self.rng.random_range(0..24), self.rng.random_range(0..60), self.rng.random_range(0..60));
        let separator = if self.chance(0.3) { 'T' } else { ' ' };
        format!("{year:04}-{month:02}-{day:02}{separator}{h:02}:{m:02}:{s:02}")
    }

    fn follower_count(&mut self) -> String {
        match self.rng.random_range(0..100) {
            0..5 => "User Info Error".to_string(),
            5..45 => self.rng.random_range(0..1000).to_string(),
            45..90 => format!("{}k", self.rng.random_range(1..1000)),
            _ => format!("{}M", self.rng.random_range(1..10)),
        }
    }

    fn maybe_string(&mut self, n: i64) -> Value {
        if self.chance(0.05) { Value::from(n.to_string()) } else { Value::from(n) }
    }

    /// The next post.
    pub fn next_post(&mut self) -> Post {
        let ind = self.next_ind;
        self.next_ind += 1;
        let category = self.category();
        let title = if self.chance(0.06) {
            "No Title Data Available".to_string()
        } else {
            let words: Vec<&str> = (0..self.rng.random_range(2..6)).map(|_| self.pick(TITLE_WORDS)).collect();
            words.join(" ")
        };
        let description = match self.rng.random_range(0..100) {
            0..4 => "No description available Story format".to_string(),
            4..7 => "No description available".to_string(),
            7..9 => "Untitled".to_string(),
            9..11 => String::new(),
            _ => format!("{title} for your next project\u{a0}… save it for later"),
        };
        let unique_id = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            self.rng.random::<u32>(),
            self.rng.random::<u16>(),
            self.rng.random_range(0..0x1000u16),
            self.rng.random_range(0..0x1000u16),
            self.rng.random::<u64>() & 0xffff_ffff_ffff
        );
        let pin = json!({
            "index": self.maybe_string(ind),
            "unique_id": unique_id,
            "title": title,
            "description": description,
            "poster_name": if self.chance(0.04) { "User Info Error".to_string() } else { format!("{} {}", self.pick(FIRST_NAMES), self.pick(TITLE_WORDS)) },
            "follower_count": self.follower_count(),
            "tag_list": if self.chance(0.05) { "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e".to_string() } else { format!("{},{}", self.pick(TITLE_WORDS), self.pick(TITLE_WORDS)) },
            "is_image_or_video": match self.rng.random_range(0..100) { 0..80 => "image", 80..95 => "video", _ => "multi-video(story page format)" },
            "image_src": if self.chance(0.03) { "Image src error.".to_string() } else { format!("https://i.pinimg.com/originals/{:x}.jpg", self.rng.random::<u64>()) },
            "downloaded": if self.chance(0.9) { 1 } else { 0 },
            "save_location": format!("Local save in /data/{category}"),
            "category": category,
        });
        let latitude = self.rng.random_range(-90.0..=90.0f64);
        let longitude = self.rng.random_range(-180.0..=180.0f64);
        let geo = json!({
            "ind": self.maybe_string(ind),
            "timestamp": self.timestamp(2018, 2022),
            "latitude": (latitude * 10_000.0).round() / 10_000.0,
            "longitude": (longitude * 10_000.0).round() / 10_000.0,
            "country": self.pick(COUNTRIES),
        });
        // Ages lean young, as the real audience does.
        let age = match self.rng.random_range(0..100) {
            0..45 => self.rng.random_range(18..=24),
            45..75 => self.rng.random_range(25..=35),
            75..92 => self.rng.random_range(36..=50),
            _ => self.rng.random_range(51..=70),
        };
        let user = json!({
            "ind": self.maybe_string(ind),
            "first_name": self.pick(FIRST_NAMES),
            "last_name": self.pick(LAST_NAMES),
            "age": self.maybe_string(age),
            "date_joined": self.timestamp(2015, 2022),
        });
        let mut post = Post { ind, pin, geo, user, poisoned: None };
        if self.chance(self.poison_rate) {
            let table = Table::ALL[self.rng.random_range(0..3)];
            match table {
                Table::Pin => post.pin["follower_count"] = Value::from("lots"),
                Table::Geo => post.geo["timestamp"] = Value::from("the day before yesterday"),
                Table::User => post.user["age"] = Value::from("unknown"),
            }
            post.poisoned = Some(table);
        }
        post
    }
}

impl Iterator for Emulator {
    type Item = Post;

    fn next(&mut self) -> Option<Post> {
        Some(self.next_post())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::clean;

    #[test]
    fn the_same_seed_gives_the_same_posts() {
        let a: Vec<String> = Emulator::new(7, 0).take(20).map(|p| p.pin.to_string()).collect();
        let b: Vec<String> = Emulator::new(7, 0).take(20).map(|p| p.pin.to_string()).collect();
        let c: Vec<String> = Emulator::new(8, 0).take(20).map(|p| p.pin.to_string()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn only_the_poisoned_records_are_rejected_and_the_dirt_is_there() {
        let posts: Vec<Post> = Emulator::new(1, 100).take(4_000).collect();
        let mut placeholders = 0;
        for post in &posts {
            for table in Table::ALL {
                let object = post.record(table).as_object().unwrap();
                let cleaned = clean(table, object);
                assert_eq!(cleaned.is_err(), post.poisoned == Some(table), "{table} {object:?}: {cleaned:?}");
            }
            placeholders += usize::from(post.pin["poster_name"] == "User Info Error");
        }
        let poisoned = posts.iter().filter(|p| p.poisoned.is_some()).count();
        assert!((5..60).contains(&poisoned), "about 0.5% poisoned, got {poisoned}");
        assert!(placeholders > 50, "placeholders appear: {placeholders}");
        assert!(posts.iter().any(|p| p.pin["follower_count"].as_str().is_some_and(|f| f.ends_with('M'))));
        assert!(posts.iter().any(|p| p.geo["timestamp"].as_str().is_some_and(|t| t.contains('T'))));
        assert!(posts.iter().any(|p| p.user["age"].is_string()));
        assert_eq!(posts[0].ind, 100);
    }
}
